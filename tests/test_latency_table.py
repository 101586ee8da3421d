import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from anas.latency import lookup_table as table_module
from anas.latency.lookup_table import (
    BlockLayer,
    HeadLayer,
    LatencyModel,
    Layer,
    StemLayer,
    TableConfig,
    build_latency_table,
    layer_counts,
    read_latency_table,
    space_layers,
    write_table,
)
from anas.nn.static import StaticNet
from anas.space.arch import ArchBatch, largest_arch, sample_archs
from anas.space.cost import batch_costs
from anas.space.schema import space_from_dict, space_to_dict

FAST = TableConfig(runs=2, warmup=0, subnets=5)


def micro_space():
    """One choice almost everywhere: five distinct layers, quick to export to ONNX."""
    return space_from_dict({
        "name": "micro", "num_classes": 10, "resolutions": [24],
        "first_conv": {"widths": [8], "kernel_size": 3, "stride": 2},
        "stages": [{"name": "mb1", "widths": [8], "depths": [1], "kernel_sizes": [3], "expand_ratios": [1]},
                   {"name": "mb2", "widths": [16], "depths": [1, 2], "kernel_sizes": [3], "expand_ratios": [4],
                    "stride": 2, "se": True}],
        "head": {"widths": [32], "expand_ratio": 6},
    })


def fake_layer_time(layer: Layer) -> float:
    """A deterministic stand-in for timing: grows with the layer's work."""
    return 0.01 + layer.mflops(10) * 0.1


@pytest.fixture
def fake_timing(monkeypatch):
    """Layers take ``fake_layer_time``; whole subnets take 0.2 + 1.5 x their layer sum +
    0.01 per layer + 3 per million parameters: the fit must recover these."""
    layers = {}

    def measure(module, size, config, c_in):
        layer = layers[id(module)]
        return fake_layer_time(layer)

    def noting(original_module):
        def module(self, space, num_classes):
            built = original_module(self, space, num_classes)
            layers[id(built)] = self
            return built

        return module

    def whole(space, arch, config, num_classes=None):
        batch = ArchBatch.from_archs([arch])
        model = LatencyModel(table_in_progress[0], space, fitted=False)
        params = batch_costs(space, batch).params_m[0]
        return float(0.2 + 1.5 * model.layer_sum(batch)[0] + 0.01 * layer_counts(batch)[0] + 3 * params)

    table_in_progress = []
    original_fit = table_module.fit_overhead

    def fit(table, batch, latency, bar=None):
        table_in_progress[:] = [table]
        return original_fit(table, batch, latency, bar)

    for kind in (StemLayer, BlockLayer, HeadLayer):
        monkeypatch.setattr(kind, "module", noting(kind.module))
    monkeypatch.setattr(table_module, "measure_latency", measure)
    monkeypatch.setattr(table_module, "subnet_latency", whole)
    monkeypatch.setattr(table_module, "fit_overhead", fit)


def layers_seen(space, arch):
    """The table keys of the layers the static network of ``arch`` runs, read from the
    modules themselves (forward hooks record each one's input size)."""
    net = StaticNet(space, arch).eval()
    keys = []

    def record(make_key):
        return lambda module, inputs: keys.append(make_key(module, inputs[0].shape))

    first = space.first_conv
    net.first_conv.register_forward_pre_hook(record(lambda m, shape: StemLayer(
        shape[-1], shape[1], m.conv.out_channels, m.conv.kernel_size[0], stride=m.conv.stride[0]).key))
    stage_of_block = [i for i, d in enumerate(arch.depth) for _ in range(d)]
    for block, stage in zip(net.blocks, stage_of_block):
        block.register_forward_pre_hook(record(lambda m, shape, i=stage: BlockLayer(
            shape[-1], shape[1], m.project.conv.out_channels, m.depthwise.conv.kernel_size[0],
            arch.expand_ratio[i], m.depthwise.conv.stride[0], m.se is not None).key))
    net.head.register_forward_pre_hook(record(lambda m, shape: HeadLayer(
        shape[-1], shape[1], m.classifier.in_features, expand=space.head.expand_ratio).key))
    import torch

    with torch.no_grad():
        net(torch.zeros(1, space.in_channels, arch.resolution, arch.resolution))
    assert first.stride == net.first_conv.conv.stride[0]
    return keys


def test_space_layers_are_distinct_and_cover_every_subnet(tiny):
    layers = space_layers(tiny)
    keys = [layer.key for layer in layers]
    assert len(set(keys)) == len(keys)
    for arch in sample_archs(tiny, 15, np.random.default_rng(0)):
        assert set(layers_seen(tiny, arch)) <= set(keys)


def test_layer_sum_equals_a_loop_over_each_network(tiny, tiny_table):
    table = read_latency_table(tiny_table)
    model = LatencyModel(table, tiny)
    batch = sample_archs(tiny, 30, np.random.default_rng(1))
    loop = [sum(table.entries[key] for key in layers_seen(tiny, arch)) for arch in batch]
    np.testing.assert_allclose(model.layer_sum(batch), loop, rtol=1e-12)
    fit = table.fit
    params = batch_costs(tiny, batch).params_m
    linear = (fit.overhead_ms + fit.scale * np.array(loop) + fit.per_layer_ms * layer_counts(batch)
              + fit.per_mparam_ms * params)
    np.testing.assert_allclose(model.predict(batch), np.maximum(linear, 0.0))


def test_layer_mflops_add_up_to_the_cost_model(tiny, tiny_table):
    """A table holding each layer's MFLOPs instead of its time sums, per subnet, to the
    subnet's MFLOPs."""
    table = read_latency_table(tiny_table)
    table.entries = {layer.key: layer.mflops(table.num_classes) for layer in space_layers(tiny)}
    batch = sample_archs(tiny, 30, np.random.default_rng(2))
    summed = LatencyModel(table, tiny).layer_sum(batch)
    np.testing.assert_allclose(summed, batch_costs(tiny, batch, table.num_classes).mflops, rtol=1e-12)


def test_table_records_how_it_was_measured(tiny_table):
    data = json.loads(tiny_table.read_text())
    assert data["device"] == "cpu" and data["batch"] == 1 and data["space_name"] == "tiny"
    assert {"torch", "python", "anas", "cpus"} <= set(data["environment"])
    assert data["complete"] and len(data["fit"]["subnets"]) == FAST.subnets
    assert all(ms > 0 for ms in data["entries"].values())


def test_fit_recovers_overhead_scale_and_per_layer_cost(tiny, tmp_path, fake_timing):
    table = build_latency_table(tiny, TableConfig(subnets=12), tmp_path / "t.json")
    assert table.fit.overhead_ms == pytest.approx(0.2, abs=1e-6)
    assert table.fit.scale == pytest.approx(1.5, rel=1e-6)
    assert table.fit.per_layer_ms == pytest.approx(0.01, abs=1e-6)
    assert table.fit.per_mparam_ms == pytest.approx(3.0, rel=1e-6)
    assert table.fit.median_rel_error < 1e-6 and table.fit.spearman > 0.99


def test_robust_fit_shrugs_off_one_hiccup():
    rng = np.random.default_rng(0)
    sums = rng.uniform(1, 5, 20)
    counts = rng.integers(8, 20, 20).astype(float)
    params = rng.uniform(0.1, 2, 20)
    measured = 0.3 + 1.2 * sums + 0.02 * counts + 0.5 * params
    measured[3] *= 15  # one subnet timed while the machine was busy
    features = np.stack([np.ones(20), sums, counts, params], axis=1)
    coefficients = table_module._robust_fit(features, measured)
    clean = np.delete(np.arange(20), 3)
    np.testing.assert_allclose((features @ coefficients)[clean], measured[clean], rtol=0.005)


def test_interrupted_build_resumes_with_what_it_measured(tiny, tmp_path, fake_timing, monkeypatch):
    path = tmp_path / "t.json"
    measure = table_module.measure_latency
    calls = []

    def interrupting(*args):
        if len(calls) == 50:
            raise KeyboardInterrupt
        calls.append(1)
        return measure(*args)

    monkeypatch.setattr(table_module, "measure_latency", interrupting)
    with pytest.raises(KeyboardInterrupt):
        build_latency_table(tiny, FAST, path)
    partial = read_latency_table(path)
    assert len(partial.entries) == 50 and not partial.complete
    calls.clear()
    monkeypatch.setattr(table_module, "measure_latency", lambda *args: calls.append(1) or measure(*args))
    table = build_latency_table(tiny, FAST, path)
    assert len(calls) == len(space_layers(tiny)) - 50 and table.complete
    assert read_latency_table(path).entries == table.entries


@pytest.mark.slow
def test_ort_cpu_table_times_onnxruntime(tmp_path):
    path = tmp_path / "ort.json"
    table = build_latency_table(micro_space(), TableConfig(device="ort-cpu", runs=2, warmup=1, subnets=5, threads=1),
                                path)
    assert len(table.entries) == len(space_layers(micro_space())) == 5  # mb1 first block == its repeat
    assert "onnxruntime" in table.environment and table.config.threads == 1
    assert table.complete and np.isfinite(table.fit.median_rel_error)


def test_profile_adds_predicted_latency(run_cli, tiny, tiny_table, tmp_path):
    model = LatencyModel(read_latency_table(tiny_table), tiny)
    result = run_cli("profile", "--space", "tiny", "--sample", "20", "--out", tmp_path / "c.csv", "--latency-table",
                     tiny_table)
    assert result.code == 0, result.stderr
    frame = pd.read_csv(tmp_path / "c.csv")
    from anas.space.table_format import frame_to_archs

    np.testing.assert_allclose(frame["latency_ms"], model.predict(frame_to_archs(tiny, frame)))
    single = run_cli("profile", "--space", "tiny", "--arch", "max", "--latency-table", tiny_table, "--json").json()
    expected = model.predict(ArchBatch.from_archs([largest_arch(tiny)]))[0]
    assert single["latency_ms"] == pytest.approx(expected) and single["device"] == "cpu"


def test_cli_builds_a_table(run_cli, tmp_path):
    path = tmp_path / "m.json"
    result = run_cli("latency-table", "--space", micro_space_file(tmp_path), "--runs", "2", "--warmup", "0",
                     "--subnets", "5", "--out", path, "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["layers"] == 5 and data["path"] == str(path) and read_latency_table(path).complete


def micro_space_file(folder):
    import yaml

    path = folder / "micro.yaml"
    path.write_text(yaml.safe_dump(space_to_dict(micro_space())))
    return path


def test_bad_tables_are_one_line_errors(run_cli, tiny_table, tmp_path):
    data = json.loads(tiny_table.read_text())
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text(json.dumps({"format": "something else"}))
    (tmp_path / "negative.json").write_text(json.dumps({**data, "entries": {**data["entries"], "stem x": -1}}))
    (tmp_path / "no-entries.json").write_text(json.dumps({k: v for k, v in data.items() if k != "entries"}))
    (tmp_path / "incomplete.json").write_text(json.dumps({**data, "fit": None, "complete": False}))
    profile = ["profile", "--space", "tiny", "--arch", "max", "--latency-table"]
    cases = [
        ([*profile, tmp_path / "garbage.json"], ["not valid JSON"]),
        ([*profile, tmp_path / "foreign.json"], ["not an anas latency table"]),
        ([*profile, tmp_path / "negative.json"], ["corrupt", "positive"]),
        ([*profile, tmp_path / "no-entries.json"], ["corrupt", "entries"]),
        ([*profile, tmp_path / "incomplete.json"], ["incomplete", "run anas latency-table again"]),
        ([*profile, tmp_path / "missing.json"], ["does not exist"]),
        ([*profile, tiny_table, "--device", "cuda"], ["measured on cpu, not cuda"]),
        ([*profile, tiny_table, "--batch-size", "4"], ["at batch 1, not 4"]),
        ([*profile, tiny_table, "--latency"], ["give one"]),
        (["profile", "--space", "cifar", "--arch", "max", "--latency-table", tiny_table], ["lacks", "layers of space cifar"]),
        (["profile", "--space", "tiny", "--arch", "max", "--num-classes", "3", "--latency-table", tiny_table],
         ["10-class head, not 3"]),
        (["latency-table", "--space", "tiny", "--device", "tpu"], ["unknown --device 'tpu'"]),
        (["latency-table", "--space", "tiny", "--subnets", "2"], ["--subnets must be at least 5"]),
        (["latency-table", "--space", "tiny", "--runs", "2", "--out", tiny_table], ["was made with --warmup 0, not 10 and --subnets 5, not 30", "--fresh"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli(*args), *fragments)


def test_write_is_atomic_and_round_trips(tiny_table, tmp_path):
    table = read_latency_table(tiny_table)
    write_table(table, tmp_path / "copy.json")
    again = read_latency_table(tmp_path / "copy.json")
    assert again.entries == table.entries and again.fit == table.fit and again.config == table.config
    assert [p.name for p in tmp_path.iterdir()] == ["copy.json"]


def test_block_keys_name_the_activation_and_version_1_tables_still_load(tiny_table, tmp_path):
    data = json.loads(Path(tiny_table).read_text())
    blocks = [key for key in data["entries"] if key.startswith("block ")]
    assert blocks and all(key.endswith(" swish") for key in blocks)
    data["version"] = 1  # written before blocks had an activation of their own
    data["entries"] = {key.removesuffix(" swish"): ms for key, ms in data["entries"].items()}
    (tmp_path / "v1.json").write_text(json.dumps(data))
    assert read_latency_table(tmp_path / "v1.json").entries == read_latency_table(tiny_table).entries
