import numpy as np
import torch

from anas.nn.static import InvertedResidual, StaticNet
from anas.space.arch import largest_arch, parse_arch, sample_archs, smallest_arch
from anas.space.schema import load_space


def test_forward_at_the_subnet_resolution_for_every_space():
    torch.manual_seed(0)
    for name in ("tiny", "cifar"):
        space = load_space(name)
        for arch in sample_archs(space, 3, np.random.default_rng(0)):
            net = StaticNet(space, arch).eval()
            x = torch.randn(2, 3, arch.resolution, arch.resolution)
            assert net(x).shape == (2, space.num_classes)


def test_attentive_nas_a0_builds_and_runs(attentive):
    net = StaticNet(attentive, parse_arch(attentive, "a0"), num_classes=5).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, 192, 192))
    assert y.shape == (1, 5)
    assert len(net.blocks) == sum(net.arch.depth)


def test_block_structure(tiny):
    arch = largest_arch(tiny)
    net = StaticNet(tiny, arch)
    blocks = list(net.blocks)
    first = blocks[0]  # mb1: expand ratio 1, 16 -> 16, stride 1: no expansion, identity
    assert isinstance(first, InvertedResidual)
    assert first.expand is None and first.shortcut is None and first.se is None
    down = blocks[2]  # first block of mb2: stride 2, 16 -> 24: pool + 1x1 conv shortcut
    assert isinstance(down.shortcut.pool, torch.nn.AvgPool2d)
    assert down.shortcut.conv.weight.shape == (24, 16, 1, 1)
    assert down.depthwise.conv.weight.shape == (96, 1, 5, 5)
    se_block = blocks[-1]
    assert se_block.se is not None and se_block.se.reduce.weight.shape == (48, 192, 1, 1)
    # the last BN of every block starts at zero, so every block starts as its shortcut
    assert all(int(torch.count_nonzero(b.project.bn.weight)) == 0 for b in blocks)
    assert net.head.classifier.out_features == 10


def test_odd_feature_maps_downsample_like_the_cost_model(tiny):
    arch = smallest_arch(tiny)  # resolution 24 -> 12 -> 12 -> 6 -> 3
    net = StaticNet(tiny, arch).eval()
    features = net.blocks(net.first_conv(torch.randn(1, 3, 24, 24)))
    assert features.shape[-1] == 3
    arch28 = parse_arch(tiny, '{"resolution": 28, "width": [8, 8, 16, 24, 64], "depth": [1, 1, 1], '
                              '"kernel_size": [3, 3, 3], "expand_ratio": [1, 4, 4]}')
    net = StaticNet(tiny, arch28).eval()
    features = net.blocks(net.first_conv(torch.randn(1, 3, 28, 28)))
    assert features.shape[-1] == 4  # 28 -> 14 -> 14 -> 7 -> 4 (ceil)


def test_tiny_largest_trains(tiny):
    torch.manual_seed(0)
    net = StaticNet(tiny, largest_arch(tiny)).train()
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_regularize_gives_the_supernets_drop_connect_rates_and_acts_only_in_training(tiny):
    from anas.nn.supernet import Supernet

    arch = sample_archs(tiny, 1, np.random.default_rng(2))[0]
    supernet = Supernet(tiny)
    supernet.set_active(arch, dropout=0.3, drop_connect=0.2, drop_connect_stages=2)
    expected = [block.drop_connect for _, block in supernet.active_modules()[1:-1]]
    net = StaticNet(tiny, arch)
    net.regularize(0.3, 0.2, 2)
    assert [block.drop_connect for block in net.blocks] == expected
    assert any(rate > 0 for rate in expected) and net.head.dropout.p == 0.3
    x = torch.randn(8, 3, arch.resolution, arch.resolution)
    for block in net.blocks:
        torch.nn.init.normal_(block.project.bn.weight)  # a residual branch that is not zero
    net.eval()
    quiet = net(x)
    net.regularize(0.0, 0.0, 2)
    assert torch.equal(net(x), quiet)  # eval mode: neither dropout nor drop-connect
    net.train()
    torch.manual_seed(0)
    plain = net(x)
    net.regularize(0.0, 0.9, 2)
    torch.manual_seed(0)
    assert not torch.allclose(net(x), plain)


def test_every_activation_a_space_may_name_has_a_module():
    from anas.nn.static import ACTIVATION_MODULES
    from anas.space.search_space import ACTIVATIONS

    assert set(ACTIVATION_MODULES) == set(ACTIVATIONS)
