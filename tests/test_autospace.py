"""AutoSpace: the mixed layers' fitness, the evolution, its budget, folder and command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_FAKE_RUN, assert_one_line_error
from torch import nn

from anas.autospace import mixed_net
from anas.autospace.evolve import evolve_space
from anas.autospace.mixed_net import MixedNet, MixedTraining, train_mixed
from anas.autospace.population import FIELDS, Block, Universe, largest_mflops, least_possible_mflops, reference_blocks
from anas.data import DataConfig, load_data, make_loader
from anas.space.schema import load_space, space_from_dict, space_to_dict

ZERO = Block(3, 2.0, False, "relu")  # the candidate that outputs zeros
CANDIDATES = [Block(3, 4.0, False, "swish"), Block(5, 4.0, False, "swish"), ZERO, Block(3, 6.0, True, "swish")]


class ZeroBranch(nn.Module):
    """A candidate block whose output is zeros (of the right shape)."""

    def __init__(self, c_out: int, stride: int):
        super().__init__()
        self.c_out, self.stride = c_out, stride

    def residual(self, x):
        n, _, h, w = x.shape
        return x.new_zeros(n, self.c_out, -(-h // self.stride), -(-w // self.stride))


def micro_tiny():
    """``tiny`` at 16 pixels with one block per stage: a mixed network that trains in seconds."""
    data = space_to_dict(load_space("tiny"))
    data["resolutions"] = [16]
    for stage in data["stages"]:
        stage["depths"] = [1]
    return space_from_dict(data)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_zero_output_candidate_gets_the_lowest_weight_in_every_stage(monkeypatch, seed):
    real = mixed_net.candidate_block
    monkeypatch.setattr(mixed_net, "candidate_block",
                        lambda b, c_in, c_out, stride: ZeroBranch(c_out, stride) if b == ZERO
                        else real(b, c_in, c_out, stride))
    space = micro_tiny()
    images = load_data(DataConfig.named(resolution=16)).train
    per_stage = [CANDIDATES[i:] + CANDIDATES[:i] for i in range(space.num_stages)]  # the zero one moves around
    torch.manual_seed(seed)
    net = MixedNet(space, per_stage, 10)

    def batches():
        for epoch in range(100):
            yield from make_loader(images, 32, shuffle=True, seed=seed, epoch=epoch, drop_last=True)

    settings = MixedTraining(steps=200, lr=0.05, arch_lr=0.01, flops_penalty=0.0)
    train_mixed(net, batches(), settings, [torch.zeros(4)] * space.num_stages)
    for weights, candidates in zip(net.stage_weights(), per_stage):
        assert int(np.argmin(weights)) == candidates.index(ZERO), (weights, candidates)
        assert weights.sum() == pytest.approx(1.0)


PLANTED = [[Block(7, 2.0, True, "relu"), Block(7, 3.0, True, "relu")],
           [Block(3, 1.0, True, "relu"), Block(5, 1.0, True, "relu")],
           [Block(7, 6.0, False, "relu"), Block(5, 6.0, False, "relu")]]


def planted_oracle(candidates, generation):
    """Weights as a mixed layer might learn them: softmax of -1.5 per field away from the
    nearest planted block, plus noise."""
    weights = []
    for i, blocks in enumerate(candidates):
        distance = np.array([min(sum(getattr(b, f) != getattr(p, f) for f in FIELDS) for p in PLANTED[i])
                             for b in blocks])
        logits = -1.5 * distance + np.random.default_rng([generation, i]).normal(0, 0.5, len(blocks))
        e = np.exp(logits - logits.max())
        weights.append(e / e.sum())
    return weights, float("nan")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evolution_recovers_planted_blocks_and_keeps_the_references(tmp_path, seed):
    summary = evolve_space({"generations": 20, "seed": seed}, folder=tmp_path, progress=False,
                           scorer=planted_oracle)
    found = sum(len(set(chosen) & set(planted)) for chosen, planted in zip(summary.evolved.blocks, PLANTED))
    assert found >= 0.75 * 6, summary.evolved.blocks
    rows = pd.read_csv(tmp_path / "evolution.csv")
    assert sorted(rows["generation"].unique()) == list(range(20))
    tiny = load_space("tiny")
    for (generation, stage), group in rows.groupby(["generation", "stage"]):
        references = {b.label for b in reference_blocks(next(s for s in tiny.stages if s.name == stage))}
        assert references <= set(group.loc[group["reference"], "block"]), (generation, stage)
        assert len(group) == 12  # the population's size holds
    for stage in tiny.stages:  # the written space keeps widths, depths and strides
        evolved = next(s for s in summary.evolved.space.stages if s.name == stage.name)
        assert (evolved.widths, evolved.depths, evolved.stride) == (stage.widths, stage.depths, stage.stride)
    assert load_space(summary.path) == summary.evolved.space


def costly_oracle(candidates, generation):
    """Prefers the costliest blocks (large kernel, expand and SE), so the budget must bite."""
    scores = [np.array([b.kernel * b.expand * (2 if b.se else 1) for b in blocks], float) for blocks in candidates]
    return [np.exp(s / s.max() * 4) / np.exp(s / s.max() * 4).sum() for s in scores], float("nan")


@pytest.mark.parametrize("budget", [None, 2.5, 1.0, 0.3, "least"])
def test_max_flops_bounds_the_evolved_largest_subnet(tmp_path, budget):
    tiny = load_space("tiny")
    if budget == "least":
        budget = least_possible_mflops(tiny, Universe())
    summary = evolve_space({"generations": 6, "max_flops": budget}, folder=tmp_path, progress=False,
                           scorer=costly_oracle)
    largest = largest_mflops(summary.evolved.space)
    if budget is None:
        assert largest > largest_mflops(tiny) and not summary.evolved.trimmed  # what the budget has to undo
    else:
        assert largest <= budget + 1e-9 and summary.evolved.trimmed
        assert largest >= 0.6 * budget  # trimmed a stage at a time, not far below the budget
    space_from_dict(space_to_dict(summary.evolved.space))  # a valid space


def test_an_interrupted_evolution_resumes_where_it_stopped(tmp_path):
    straight = evolve_space({"generations": 5}, folder=tmp_path / "a", progress=False, scorer=planted_oracle)

    def failing(candidates, generation):
        if generation == 3:
            raise KeyboardInterrupt
        return planted_oracle(candidates, generation)

    with pytest.raises(KeyboardInterrupt):
        evolve_space({"generations": 5}, folder=tmp_path / "b", progress=False, scorer=failing)
    assert json.loads((tmp_path / "b" / "state.json").read_text())["generation"] == 3
    resumed = evolve_space({"generations": 5}, folder=tmp_path / "b", progress=False, scorer=planted_oracle)
    assert resumed.evolved.space == straight.evolved.space
    assert (tmp_path / "a" / "evolution.csv").read_text() == (tmp_path / "b" / "evolution.csv").read_text()

    def no_training(candidates, generation):
        raise AssertionError("a finished evolution trains nothing")

    cheaper = evolve_space({"generations": 5, "max_flops": 1.0, "keep": 1}, folder=tmp_path / "b", progress=False,
                           scorer=no_training)  # the same evolution, another budget
    assert largest_mflops(cheaper.evolved.space) <= 1.0 and all(len(b) == 1 for b in cheaper.evolved.blocks)
    more = evolve_space({"generations": 7}, folder=tmp_path / "b", progress=False, scorer=planted_oracle)
    assert more.generations == 7


def test_evolve_command_writes_the_space_csv_and_shows_the_changes(run_cli, tmp_path):
    folder = tmp_path / "evo"
    args = ["space", "evolve", "--generations", "2", "--steps", "3", "--population", "6", "--dir", folder]
    result = run_cli(*args, "--json")
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["from"] == "tiny" and summary["generations"] == 2 and len(summary["stages"]) == 3
    space = load_space(summary["path"])
    assert space.name == "tiny-evolved"
    rows = pd.read_csv(folder / "evolution.csv")
    assert len(rows) == 2 * 3 * 6
    assert {"generation", "stage", "block", "kernel", "expand", "se", "activation", "reference", "weight",
            "fitness"} <= set(rows.columns)
    drawn = rows[rows["weight"].notna()]
    assert len(drawn) == 2 * 3 * 4 and drawn.groupby(["generation", "stage"])["weight"].sum().round(5).eq(1).all()
    shown = run_cli("space", "show", summary["path"], "--json")
    assert shown.code == 0 and shown.json()["against"] == "tiny"
    assert {(c["where"], c["setting"]) for c in shown.json()["changes"]} == \
        {(c["where"], c["setting"]) for c in _changes(load_space("tiny"), space)}
    human = run_cli("space", "show", summary["path"], "--against", "tiny")
    assert human.code == 0 and "MFLOPs: tiny 0.223-2.922" in human.stdout
    again = run_cli(*args, "--json")  # finished: the same space again, nothing retrained
    assert again.code == 0 and again.json()["stages"] == summary["stages"]
    assert_one_line_error(run_cli(*args, "--seed", "1"), "was made with --seed 0, not 1", "--fresh")


def _changes(old, new):
    from anas.space.compare import space_changes

    return [vars(c) for c in space_changes(old, new)]


EVOLVED_LIKE = {  # what an evolution can write: 7x7 kernels, SE and relu where tiny had neither
    "mb1": {"kernel_sizes": [3, 7], "expand_ratios": [1, 2], "se": True, "activation": "relu"},
    "mb2": {"kernel_sizes": [7], "expand_ratios": [3, 6], "se": True, "activation": "relu"},
    "mb3": {"kernel_sizes": [5, 7], "expand_ratios": [4], "se": False},
}


def evolved_like_space():
    data = space_to_dict(load_space("tiny"))
    data["name"] = "tiny-evolved-like"
    for stage in data["stages"]:
        stage.update(EVOLVED_LIKE[stage["name"]])
    return space_from_dict(data)


def test_new_block_fields_reach_the_networks():
    from anas.nn.static import StaticNet
    from anas.nn.supernet import Supernet
    from anas.space.arch import largest_arch, sample_archs, smallest_arch

    space = evolved_like_space()
    assert [s.activation for s in space.stages] == ["relu", "relu", "swish"]
    assert "activation" not in space_to_dict(space)["stages"][2]  # written only where it differs
    torch.manual_seed(0)
    supernet = Supernet(space).eval()
    for arch in [smallest_arch(space), largest_arch(space), *sample_archs(space, 4, np.random.default_rng(0))]:
        supernet.set_active(arch)
        static = supernet.get_active_subnet().eval()
        x = torch.randn(2, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            assert (supernet(x) - static(x)).abs().max() <= 1e-5
    net = StaticNet(space, largest_arch(space))
    first = net.blocks[0]
    assert isinstance(first.depthwise.act, nn.ReLU) and first.se is not None
    assert first.depthwise.conv.kernel_size == (7, 7)
    assert isinstance(net.blocks[-1].depthwise.act, nn.SiLU) and net.blocks[-1].se is None


@pytest.mark.slow
def test_an_evolved_like_space_trains_and_exports_to_onnx(run_cli, tmp_path):

    from anas.space.schema import write_space

    path = write_space(evolved_like_space(), tmp_path / "evolved.yaml")
    options = {**TINY_FAKE_RUN, "space": str(path), "run_dir": str(tmp_path / "run")}
    args = [item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", value)]
    assert run_cli("train", *args, "--quiet").code == 0
    arch = {"resolution": 32, "width": [16, 16, 24, 32, 128], "depth": [2, 2, 3], "kernel_size": [7, 7, 7],
            "expand_ratio": [2, 6, 4]}
    for spec in ("max", json.dumps(arch)):
        result = run_cli("export", "--run", tmp_path / "run", "--arch", spec, "--to", "onnx",
                         "--out", tmp_path / "net.onnx", "--json")
        assert result.code == 0, result.stderr  # export loads the file back and compares its logits


@pytest.mark.parametrize("args, message", [
    (["--max-flops", "0.05"], "is below 0.112 MFLOPs, the smallest subnet a space evolved from tiny"),
    (["--kernels", "9,11"], "the universe leaves stage mb3 no candidate: its input is 8x8"),
    (["--population", "4"], "--population 4 leaves no room beside stage mb2's 4 reference blocks"),
    (["--kernels", "4"], "kernel sizes must be odd"),
    (["--se", "maybe"], "'maybe' is neither off nor on"),
    (["--activations", "gelu"], "unknown activation 'gelu'"),
    (["--expands", ""], "the universe's --expands is empty"),
    (["--candidates", "1"], "--candidates must be at least 2"),
    (["--data", "imagefolder", "--data-dir", "no-such-folder"], "data dir no-such-folder does not exist"),
])
def test_bad_evolve_input_is_one_line(run_cli, tmp_path, args, message):
    assert_one_line_error(run_cli("space", "evolve", "--dir", tmp_path / "evo", *args), message)
    assert not (tmp_path / "evo" / "state.json").exists()


def test_corrupt_state_is_one_line(run_cli, tmp_path):
    (tmp_path / "state.json").write_text('{"format": "anas-space-evolution", "config": {}}')
    assert_one_line_error(run_cli("space", "evolve", "--dir", tmp_path, "--generations", "1"),
                          "is corrupt or not an anas evolution state")
