import dataclasses

import numpy as np
import pytest
from conftest import assert_one_line_error, planted_table

from anas.errors import AnasError
from anas.latency.lookup_table import space_layers, write_table
from anas.latency.reduce import reduce_space, stage_choices
from anas.space.schema import load_space, write_space


def test_slow_kernel_is_dropped_in_every_stage_and_nothing_else(tiny):
    table = planted_table(tiny, slow=lambda layer: layer.kernel == 5)
    reduction = reduce_space(table, tiny, ratio=1.5)
    dropped = {(c.stage, c.setting, c.value) for c in reduction.dropped}
    assert dropped == {(stage.name, "kernel_size", 5) for stage in tiny.stages}
    assert all(stage.kernel_sizes == (3,) for stage in reduction.space.stages)
    for old, new in zip(tiny.stages, reduction.space.stages):
        assert (old.widths, old.expand_ratios, old.depths) == (new.widths, new.expand_ratios, new.depths)
    assert reduction.new_range_ms[1] < reduction.old_range_ms[1]  # the largest subnet lost its slow kernels


def test_every_setting_keeps_its_most_efficient_choice(tiny):
    """Random block speeds, the strictest ratio: every setting keeps a choice, the one with
    the lowest ms per MFLOP among others, and only choices above the ratio go."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        speeds = {layer.key: rng.uniform(0.5, 20) for layer in space_layers(tiny)}
        table = planted_table(tiny)
        table.entries = {key: ms * speeds[key] for key, ms in table.entries.items()}
        choices = stage_choices(table, tiny, 1.0)
        for stage in tiny.stages:
            for setting in ("kernel_size", "expand_ratio", "width"):
                group = [c for c in choices if c.stage == stage.name and c.setting == setting]
                kept = [c for c in group if not c.dropped]
                assert kept and min(group, key=lambda c: c.ms_per_mflop) in kept
                assert all(c.relative > 1.0 for c in group if c.dropped)
        reduced = reduce_space(table, tiny, ratio=1.0).space
        assert all(s.kernel_sizes and s.expand_ratios and s.widths for s in reduced.stages)


def test_ratio_below_one_and_foreign_tables_are_refused(tiny):
    table = planted_table(tiny)
    with pytest.raises(AnasError, match="--ratio must be at least 1"):
        reduce_space(table, tiny, ratio=0.9)
    with pytest.raises(AnasError, match="lacks .* layers of space cifar"):
        reduce_space(table, load_space("cifar"))


def test_published_models_that_lose_a_choice_are_left_out(attentive):
    table = planted_table(attentive, slow=lambda layer: layer.kernel == 5)
    reduction = reduce_space(table, attentive)
    assert set(reduction.space.models) < set(attentive.models)
    for arch in reduction.space.models.values():
        assert 5 not in arch["kernel_size"]


def test_cli_writes_a_space_that_loads(run_cli, tiny, tmp_path):
    path = tmp_path / "table.json"
    write_table(planted_table(tiny, slow=lambda layer: layer.expand == 6), path)
    result = run_cli("space", "reduce", "--latency-table", path, "--out", tmp_path / "new.yaml", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert {(d["stage"], d["setting"], d["value"]) for d in data["dropped"]} == {("mb2", "expand_ratio", 6),
                                                                                 ("mb3", "expand_ratio", 6)}
    reduced = load_space(tmp_path / "new.yaml")
    assert reduced.name == "tiny-cpu" and [s.expand_ratios for s in reduced.stages] == [(1,), (4,), (4,)]
    assert data["new_latency_ms"][1] < data["old_latency_ms"][1]
    text = run_cli("space", "reduce", "--latency-table", path, "--out", tmp_path / "b.yaml", "--name", "mine")
    assert text.code == 0 and "expand_ratio" in text.stdout and "predicted latency" in text.stdout
    assert load_space(tmp_path / "b.yaml").name == "mine"
    assert_one_line_error(run_cli("space", "reduce", "--latency-table", path, "--ratio", "0.5"), "--ratio")
    assert_one_line_error(run_cli("space", "reduce", "--latency-table", path, "--space", "cifar"), "lacks")
    assert_one_line_error(run_cli("space", "reduce", "--latency-table", tmp_path / "none.json"), "does not exist")


def test_write_space_round_trips(tiny, tmp_path):
    renamed = dataclasses.replace(tiny, name="copy")
    assert load_space(write_space(renamed, tmp_path / "copy.yaml")) == renamed
    assert np.all([p.suffix == ".yaml" for p in tmp_path.iterdir()])
