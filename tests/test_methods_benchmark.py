"""``benchmarks/methods.py --quick`` runs end to end and writes its figures."""

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "methods.py"


def test_quick_methods_benchmark(tmp_path):
    out = tmp_path / "methods.json"
    args = [sys.executable, str(BENCHMARK), "--quick", "--methods", "uniform,bestup-k3", "--work", str(tmp_path / "w"),
            "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["methods"]) == {"uniform", "bestup-k3"}
    assert len(result["band_edges_mflops"]) == 5 and len(result["standalone"]["acc1"]) == 4
    for figures in result["methods"].values():
        assert len(figures["per_seed"]) == 1 and len(figures["best_acc1_per_band"]) == 4
        assert 0 <= figures["mean_acc1"]["mean"] <= 100
    assert "uniform |" in done.stdout and "bestup-k3 |" in done.stdout
