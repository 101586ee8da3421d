import numpy as np
import pytest
import torch
from ptflops import get_model_complexity_info

from anas.nn.static import StaticNet
from anas.space.arch import ArchBatch, parse_arch, sample_archs
from anas.space.cost import arch_costs, batch_costs
from anas.space.schema import load_space

PUBLISHED_MFLOPS = {"a0": 203.4, "a1": 279.2, "a2": 316.7, "a3": 356.5, "a4": 443.5, "a5": 490.5, "a6": 709.0}


@pytest.mark.parametrize("name, expected", sorted(PUBLISHED_MFLOPS.items()))
def test_published_models_have_their_published_mflops(attentive, name, expected):
    mflops, _ = arch_costs(attentive, parse_arch(attentive, name))
    assert abs(mflops - expected) <= 0.05


def _bias_adds(net: torch.nn.Module, resolution: int) -> int:
    """Bias additions of one forward pass: ptflops' aten backend counts them as MACs, the
    MFLOPs convention does not."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += output[0].numel()

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None]
    with torch.no_grad():
        net(torch.zeros(1, 3, resolution, resolution))
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize("space_name, n", [("tiny", 8), ("cifar", 6), ("attentive-nas", 3)])
def test_analytic_costs_equal_ptflops_on_the_static_network(space_name, n):
    space = load_space(space_name)
    batch = sample_archs(space, n, np.random.default_rng(7))
    costs = batch_costs(space, batch)
    for i, arch in enumerate(batch):
        net = StaticNet(space, arch).eval()
        # The aten backend counts multiply-accumulates of aten.convolution / addmm (plus bias
        # adds); the pytorch backend would add BN, activations and pooling.
        macs, params = get_model_complexity_info(
            net, (3, arch.resolution, arch.resolution), as_strings=False,
            print_per_layer_stat=False, backend="aten",
        )
        assert macs - _bias_adds(net, arch.resolution) == costs.macs[i]
        assert params == costs.params[i] == sum(p.numel() for p in net.parameters())


def test_num_classes_changes_only_the_classifier(tiny):
    arch = parse_arch(tiny, "max")
    m10, p10 = arch_costs(tiny, arch, 10)
    m100, p100 = arch_costs(tiny, arch, 100)
    head = arch.width[-1]
    assert round((m100 - m10) * 1e6) == head * 90
    assert round((p100 - p10) * 1e6) == head * 90 + 90


def test_vectorized_equals_one_at_a_time(attentive):
    batch = sample_archs(attentive, 64, np.random.default_rng(1))
    costs = batch_costs(attentive, batch)
    for i in range(0, 64, 9):
        single = batch_costs(attentive, ArchBatch.from_archs([batch[i]]))
        assert single.macs[0] == costs.macs[i] and single.params[0] == costs.params[i]


def test_cost_grows_with_every_setting(attentive):
    base = parse_arch(attentive, "a0").to_dict()
    base_mflops, _ = arch_costs(attentive, parse_arch(attentive, "a0"))
    for field, index, value in [("resolution", None, 224), ("width", 4, 72), ("depth", 5, 4),
                                ("kernel_size", 2, 5), ("expand_ratio", 3, 6)]:
        changed = {k: list(v) if isinstance(v, list) else v for k, v in base.items()}
        if index is None:
            changed[field] = value
        else:
            changed[field][index] = value
        from anas.space.arch import arch_from_dict

        mflops, _ = arch_costs(attentive, arch_from_dict(attentive, changed))
        assert mflops > base_mflops, field


@pytest.mark.parametrize("space_name", ["tiny", "cifar", "attentive-nas"])
def test_table_lookup_equals_the_layer_by_layer_formulas(space_name):
    from anas.space.arch import concat_batches, sample_archs_by_size
    from anas.space.cost import direct_costs

    space = load_space(space_name)
    rng = np.random.default_rng(11)
    batch = concat_batches([sample_archs(space, 3000, rng), sample_archs_by_size(space, 3000, rng)])
    for classes in (None, 37):
        fast, slow = batch_costs(space, batch, classes), direct_costs(space, batch, classes)
        assert np.array_equal(fast.macs, slow.macs) and np.array_equal(fast.params, slow.params)
