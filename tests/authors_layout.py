"""A supernet's tensors as the authors' code writes them (the test stand-in for a published
AttentiveNAS checkpoint)."""

import re

import torch

from anas.nn.supernet import Supernet
from anas.published.importer import PREFIX, authors_names


def to_authors_layout(supernet: Supernet, tracking: bool = True) -> dict[str, torch.Tensor]:
    """``supernet``'s tensors under the authors' names with the ``module.`` prefix, plus
    (with ``tracking``) their BN-tracking buffers and the shortcut convolutions anas does
    not keep: a state dict as the authors' code writes it (for tests and docs)."""
    state = supernet.state_dict()
    names = authors_names(supernet.space, state)
    out = {PREFIX + names[name]: tensor.clone() for name, tensor in state.items()}
    if tracking:
        for name, tensor in state.items():
            bn = re.match(r"(.*\.bn\.bn)\.(running_mean|running_var|num_batches_tracked)$", names[name])
            if bn:
                for k in (0, 1):
                    out[f"{PREFIX}{bn.group(1).removesuffix('.bn')}.bn_tracking.{k}.{bn.group(2)}"] = tensor.clone()
        n = 0
        for stage in supernet.space.stages:
            for j in range(max(stage.depths)):
                key = f"{PREFIX}blocks.{n}.shortcut.conv.conv.weight"
                if key not in out:
                    out[key] = torch.zeros(max(stage.widths), max(stage.widths), 1, 1)
                n += 1
    return out
