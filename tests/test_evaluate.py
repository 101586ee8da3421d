import torch

from anas.nn.accuracy import evaluate, recalibrate_bn


def test_recalibration_is_a_cumulative_average():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    net[1].running_mean.fill_(100.0)
    batches = [(torch.randn(8, 3, 5, 5) + i, None) for i in range(3)]
    recalibrate_bn(net, batches, num_batches=3)
    with torch.no_grad():
        means = torch.stack([net[0](x).mean((0, 2, 3)) for x, _ in batches])
    assert torch.allclose(net[1].running_mean, means.mean(0), atol=1e-5)
    assert not net.training
    assert net[1].momentum == 0.1  # restored


def test_recalibration_uses_only_the_asked_batches():
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(1))
    batches = [(torch.full((2, 1, 2, 2), float(i)), None) for i in range(10)]
    recalibrate_bn(net, batches, num_batches=2)
    assert abs(net[0].running_mean.item() - 0.5) < 1e-6


def test_evaluate_top1_top5():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x[:, 0, 0, :6]  # logits are the first row of the image

    logits = torch.tensor([[0, 9, 1, 2, 3, 4.0], [9, 0, 1, 2, 3, 4.0]])
    images = logits.view(2, 1, 1, 6)
    result = evaluate(Fixed(), [(images, torch.tensor([1, 1]))])
    assert result.acc1 == 50.0 and result.acc5 == 50.0 and result.images == 2


def test_subnets_are_evaluated_at_their_own_resolution():
    from anas.nn.accuracy import evaluate_subnet
    from anas.nn.supernet import Supernet
    from anas.space.arch import smallest_arch
    from anas.space.schema import load_space

    space = load_space("tiny")
    supernet = Supernet(space)
    seen = []
    handle = supernet.first_conv.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1]))
    static_seen = []
    original = supernet.get_active_subnet

    def spying():
        net = original()
        net.first_conv.register_forward_hook(lambda m, i, o: static_seen.append(i[0].shape[-1]))
        return net

    supernet.get_active_subnet = spying
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))) for _ in range(2)]
    evaluate_subnet(supernet, smallest_arch(space), batches, 2, batches)
    handle.remove()
    assert static_seen and set(static_seen) == {24}  # the smallest subnet's resolution, not the data's 32
