"""The search space as data: its choices (``space``, read from YAML by ``schema``), its
subnets (``arch``), their analytic costs (``cost``) and the table format (``table``)."""

from anas.space.arch import Arch, ArchBatch, largest_arch, parse_arch, sample_archs, smallest_arch
from anas.space.cost import Costs, arch_costs, batch_costs
from anas.space.schema import builtin_space_names, load_space, space_from_dict, space_to_dict
from anas.space.search_space import SearchSpace

__all__ = ["Arch", "ArchBatch", "Costs", "SearchSpace", "arch_costs", "batch_costs", "builtin_space_names",
           "largest_arch", "load_space", "parse_arch", "sample_archs", "smallest_arch", "space_from_dict",
           "space_to_dict"]
