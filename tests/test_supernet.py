import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from anas.nn.static import ConvBNAct, SqueezeExcite
from anas.nn.supernet import DynamicConvBNAct, DynamicSqueezeExcite, Supernet, crop, op_choices
from anas.space.arch import largest_arch, sample_archs, smallest_arch
from anas.space.schema import load_space


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so that zero-initialized layers do
    not hide slicing mistakes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("space_name, n, private_bn", [("tiny", 6, False), ("cifar", 4, False),
                                                       ("attentive-nas", 2, False), ("tiny", 6, True),
                                                       ("cifar", 4, True)])
def test_supernet_and_extracted_static_net_agree(space_name, n, private_bn):
    space = load_space(space_name)
    torch.manual_seed(0)
    supernet = Supernet(space, private_bn=private_bn)
    _randomize(supernet)
    supernet.eval()
    archs = [smallest_arch(space), largest_arch(space), *sample_archs(space, n, np.random.default_rng(3))]
    for arch in archs:
        supernet.set_active(arch)
        static = supernet.get_active_subnet().eval()
        x = torch.randn(2, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            diff = (supernet(x) - static(x)).abs().max().item()
        assert diff <= 1e-5, (arch, diff)


def test_training_mode_agrees_too(tiny):
    torch.manual_seed(1)
    supernet = Supernet(tiny)
    _randomize(supernet)
    arch = sample_archs(tiny, 1, np.random.default_rng(5))[0]
    supernet.set_active(arch)
    static = supernet.get_active_subnet()
    static.head.dropout.p = 0.0  # the supernet applies dropout only when set_active asks for it
    supernet.train(), static.train()
    x = torch.randn(8, 3, arch.resolution, arch.resolution)
    assert torch.allclose(supernet(x), static(x), atol=1e-5)


def test_supernet_resizes_its_input(tiny):
    supernet = Supernet(tiny).eval()
    arch = smallest_arch(tiny)  # resolution 24
    supernet.set_active(arch)
    x = torch.randn(2, 3, 32, 32)
    resized = torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    static = supernet.get_active_subnet().eval()
    with torch.no_grad():
        assert torch.allclose(supernet(x), static(resized), atol=1e-6)


def test_extracted_net_is_independent(tiny):
    supernet = Supernet(tiny)
    supernet.set_active(largest_arch(tiny))
    static = supernet.get_active_subnet()
    with torch.no_grad():
        static.first_conv.conv.weight.add_(1.0)
    assert not torch.equal(static.first_conv.conv.weight, supernet.first_conv.conv.weight)


def test_largest_subnet_uses_every_weight_but_unneeded_shortcuts(tiny):
    supernet = Supernet(tiny)
    supernet.set_active(largest_arch(tiny))
    static = supernet.get_active_subnet()
    # mb1's first block maps 16 -> 16 in the largest subnet (identity) but 8 -> 16 elsewhere
    shortcut = supernet.stages[0][0].shortcut.conv.weight.numel()
    assert shortcut == 16 * 16
    total = sum(p.numel() for p in supernet.parameters())
    assert sum(p.numel() for p in static.parameters()) == total - shortcut


def test_smallest_subnet_gradients_touch_only_its_slice(tiny):
    supernet = Supernet(tiny)
    supernet.set_active(smallest_arch(tiny))
    supernet(torch.randn(2, 3, 24, 24)).sum().backward()
    grad = supernet.first_conv.conv.weight.grad
    assert grad[:8].abs().sum() > 0 and grad[8:].abs().sum() == 0
    # blocks past the active depth get no gradient at all
    assert supernet.stages[2][2].depthwise.conv.weight.grad is None


@pytest.mark.parametrize("channels_last", ["never", "before set_active", "after a first pass"])
def test_subnet_gradients_equal_the_static_nets(tiny, channels_last):
    """Every shared weight receives exactly the extracted network's gradient on its slice
    (kernel centre included) and zero outside it, also with channels-last weights, and also
    when the weights change memory format after a first pass."""
    torch.manual_seed(2)
    supernet = Supernet(tiny)
    _randomize(supernet)
    if channels_last == "before set_active":
        supernet = supernet.to(memory_format=torch.channels_last)
    arch = sample_archs(tiny, 1, np.random.default_rng(11))[0]
    supernet.set_active(arch)
    x = torch.randn(4, 3, arch.resolution, arch.resolution)
    if channels_last == "after a first pass":
        supernet(x).sum().backward()
        supernet.zero_grad(set_to_none=True)
        supernet = supernet.to(memory_format=torch.channels_last)
        assert supernet.first_conv.conv.weight.is_contiguous(memory_format=torch.channels_last)
    static = supernet.get_active_subnet()
    static.head.dropout.p = 0.0
    if channels_last != "never":
        x = x.contiguous(memory_format=torch.channels_last)
    supernet.train(), static.train()
    supernet(x).square().sum().backward()
    static(x).square().sum().backward()
    shared = {f"{prefix}.{name}": p for prefix, module in supernet.active_modules()
              for name, p in module.named_parameters()}
    checked = 0
    for name, param in static.named_parameters():
        grad = shared[name].grad
        part = crop(grad, *param.shape)
        assert torch.allclose(part, param.grad, atol=1e-4, rtol=1e-4), name
        outside = grad.clone()
        crop(outside, *param.shape).zero_()
        assert outside.abs().max() == 0, name
        checked += 1
    assert checked == len(list(static.parameters()))


@pytest.mark.parametrize("depthwise", [False, True])
def test_an_elastic_layer_runs_on_its_own(depthwise):
    """A dynamic layer is an ordinary module: with its active setting it computes what a
    static layer holding the cropped weights computes."""
    torch.manual_seed(0)
    layer = DynamicConvBNAct(16, 16 if depthwise else 24, 5, depthwise=depthwise)
    _randomize(layer)
    layer.active_in, layer.active_out, layer.active_kernel = (8, 8, 3) if depthwise else (8, 12, 5)
    static = ConvBNAct(8, 8 if depthwise else 12, 3 if depthwise else 5, groups=8 if depthwise else 1)
    static.load_state_dict({k: crop(v, *static.state_dict()[k].shape) for k, v in layer.state_dict().items()})
    x = torch.randn(2, 8, 9, 9)
    layer.eval(), static.eval()
    assert torch.allclose(layer(x), static(x), atol=1e-6)
    se = DynamicSqueezeExcite(16, 8)
    se.active_channels, se.active_squeezed = 8, 4
    static_se = SqueezeExcite(8, 4)
    static_se.load_state_dict({k: crop(v, *static_se.state_dict()[k].shape) for k, v in se.state_dict().items()})
    assert torch.allclose(se(x), static_se(x), atol=1e-6)


def test_forward_reads_the_current_parameters_after_they_are_replaced(tiny):
    """Every forward pass slices the tensors the supernet holds at that moment: after
    load_state_dict(assign=True) or a deep copy, the forward pass and its gradients use the
    parameters the supernet holds now."""
    torch.manual_seed(5)
    supernet = Supernet(tiny).train()
    arch = sample_archs(tiny, 1, np.random.default_rng(2))[0]
    supernet.set_active(arch)
    x = torch.randn(2, 3, arch.resolution, arch.resolution)
    supernet(x)
    other = Supernet(tiny)
    _randomize(other, seed=3)
    supernet.load_state_dict(other.state_dict(), assign=True)
    other.set_active(arch)
    supernet.eval(), other.eval()  # running statistics (the loaded buffers) in use
    assert torch.allclose(supernet(x), other(x), atol=1e-6)
    supernet.train(), other.train()
    assert torch.allclose(supernet(x), other(x), atol=1e-6)
    copied = copy.deepcopy(supernet)
    copied(x).sum().backward()
    assert all(p.grad is None for p in supernet.parameters())
    assert sum(p.grad is not None for p in copied.parameters()) > 0


def test_supernet_in_channels_last_agrees_with_the_static_net(tiny):
    torch.manual_seed(4)
    supernet = Supernet(tiny)
    _randomize(supernet)
    supernet = supernet.to(memory_format=torch.channels_last).eval()
    for arch in [smallest_arch(tiny), *sample_archs(tiny, 3, np.random.default_rng(8))]:
        supernet.set_active(arch)
        static = supernet.get_active_subnet().eval()
        x = torch.randn(2, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            assert torch.allclose(supernet(x.contiguous(memory_format=torch.channels_last)), static(x), atol=1e-5)


def test_crop_takes_the_leading_channels_and_the_kernel_centre():
    weight = torch.arange(5 * 5, dtype=torch.float32).view(1, 1, 5, 5)
    assert crop(weight, 1, 1, 3, 3).flatten().tolist() == [6, 7, 8, 11, 12, 13, 16, 17, 18]
    weight = torch.arange(4 * 3 * 5 * 5, dtype=torch.float32).view(4, 3, 5, 5)
    assert torch.equal(crop(weight, 2, 1, 3, 3), weight[:2, :1, 1:4, 1:4])
    assert torch.equal(crop(weight, 2), weight[:2])
    assert crop(weight, 4, 3) is weight  # whole: the tensor itself
    channels_last = weight.contiguous(memory_format=torch.channels_last)
    assert torch.equal(crop(channels_last, 2, 1, 3, 3), weight[:2, :1, 1:4, 1:4])


def test_drop_connect_and_dropout_only_in_training(tiny):
    supernet = Supernet(tiny)
    _randomize(supernet)
    supernet.set_active(largest_arch(tiny), dropout=0.5, drop_connect=0.5)
    x = torch.randn(4, 3, 32, 32)
    supernet.eval()
    with torch.no_grad():
        assert torch.equal(supernet(x), supernet(x))
    supernet.train()
    torch.manual_seed(0)
    with supernet.frozen_bn_stats(), torch.no_grad():
        a = supernet(x)
        b = supernet(x)
    assert not torch.equal(a, b)


def test_private_bn_keeps_a_scale_per_kernel_and_expand_choice(tiny):
    """Each block's projection BN has one (gamma, beta) row per (kernel, expand) pair; a
    subnet trains only its rows, and the static net gets them."""
    supernet = Supernet(tiny, private_bn=True)
    _randomize(supernet)
    block = supernet.stages[1][0]
    assert block.project.bn.weight.shape == (4, 24)  # kernels (3, 5) x expand ratios (4, 6)
    assert block.depthwise.bn.weight.ndim == 1  # only the projection BN is private
    arch = replace(largest_arch(tiny), kernel_size=(3, 5, 5), expand_ratio=(1, 4, 6))
    supernet.set_active(arch)
    row = op_choices((3, 5), (4, 6)).index((5, 4))
    assert block.project.bn.active_choice == row
    supernet.train()
    supernet(torch.randn(2, 3, arch.resolution, arch.resolution)).sum().backward()
    grad = block.project.bn.weight.grad
    assert grad[row].abs().sum() > 0
    assert grad[[i for i in range(4) if i != row]].abs().sum() == 0
    static = supernet.get_active_subnet()
    assert torch.equal(static.blocks[2].project.bn.weight, block.project.bn.weight[row])
    assert torch.equal(static.blocks[2].project.bn.bias, block.project.bn.bias[row])


def test_private_bn_checkpoints_do_not_load_into_a_shared_bn_supernet(tiny):
    state = Supernet(tiny, private_bn=True).state_dict()
    with pytest.raises(RuntimeError):
        Supernet(tiny).load_state_dict(state)
