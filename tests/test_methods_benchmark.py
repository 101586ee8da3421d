"""``benchmarks/methods.py --quick`` runs end to end and writes its figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.stats

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "methods.py"


@pytest.mark.slow
def test_quick_methods_benchmark(tmp_path):
    out = tmp_path / "methods.json"
    methods = "uniform,bestup-k3,bn-only-1ep+bn-indicator,autospace"
    args = [sys.executable, str(BENCHMARK), "--quick", "--methods", methods, "--work", str(tmp_path / "w"),
            "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["methods"]) == set(methods.split(","))
    assert len(result["band_edges_mflops"]) == 5 and len(result["standalone"]["acc1"]) == 4
    for figures in result["methods"].values():
        assert len(figures["per_seed"]) == 1 and len(figures["best_acc1_per_band"]) == 4
        assert 0 <= figures["mean_acc1"]["mean"] <= 100
    for name in (*methods.split(","), "MFLOPs alone", "params alone"):
        assert f"{name} |" in done.stdout
    bn = result["methods"]["bn-only-1ep+bn-indicator"]
    per_seed = [seed["kendall_tau_evaluated"] for seed in bn["per_seed"]]  # zero-cost rankings against uniform's top-1
    assert bn["kendall_tau_evaluated"]["mean"] == pytest.approx(sum(per_seed) / len(per_seed))
    assert "kendall_tau_evaluated" not in result["methods"]["uniform"]
    evolved = result["methods"]["autospace"]  # trained on its own space: no stand-alone subnets to rank
    assert evolved["kendall_tau"]["mean"] is None and "space_changes" in evolved["per_seed"][0]
    assert evolved["per_seed"][0]["mflops_range"][1] <= result["band_edges_mflops"][-1] + 1e-9
    alone = result["standalone"]
    expected = scipy.stats.kendalltau(alone["acc1"], alone["params_m"]).statistic
    assert result["baselines"]["params alone"]["kendall_tau"] == pytest.approx(expected)
