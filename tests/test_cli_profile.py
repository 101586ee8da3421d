import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import assert_one_line_error

from anas.space.table_format import setting_columns

PUBLISHED_MFLOPS = {"a0": 203.4, "a1": 279.2, "a2": 316.7, "a3": 356.5, "a4": 443.5, "a5": 490.5, "a6": 709.0}


@pytest.mark.parametrize("name", sorted(PUBLISHED_MFLOPS))
def test_profile_published_models_json(run_cli, name):
    result = run_cli("profile", "--space", "attentive-nas", "--arch", name, "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert abs(data["mflops"] - PUBLISHED_MFLOPS[name]) <= 0.05
    assert set(data) >= {"mflops", "params_m", "arch"}
    assert data["arch"]["resolution"] in (192, 224, 256, 288)


def test_profile_human_table(run_cli):
    result = run_cli("profile", "--space", "tiny", "--arch", "max")
    assert result.code == 0
    assert "MFLOPs" in result.stdout and "2.92" in result.stdout


def test_profile_latency_json(run_cli):
    result = run_cli("profile", "--space", "tiny", "--arch", "min", "--latency", "--runs", "3",
                     "--warmup", "1", "--batch-size", "2", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["latency_ms"] > 0 and data["batch_size"] == 2 and data["device"] == "cpu"


def test_profile_num_classes(run_cli):
    ten = run_cli("profile", "--space", "tiny", "--arch", "max", "--json").json()
    hundred = run_cli("profile", "--space", "tiny", "--arch", "max", "--num-classes", "100", "--json").json()
    assert hundred["params_m"] > ten["params_m"]


def test_profile_space_summary(run_cli):
    data = run_cli("profile", "--space", "attentive-nas", "--json").json()
    assert abs(data["smallest"]["mflops"] - 203.4) < 0.05
    assert data["models"] == [f"a{i}" for i in range(7)]
    assert data["num_subnets"] > 10**11


def test_profile_sample_table(run_cli, tiny, tmp_path):
    out = tmp_path / "t.csv"
    result = run_cli("profile", "--space", "tiny", "--sample", "200", "--out", out, "--seed", "3", "--json")
    assert result.code == 0, result.stderr
    frame = pd.read_csv(out)
    assert list(frame.columns) == setting_columns(tiny) + ["mflops", "params_m"]
    assert len(frame) == 200
    assert result.json()["rows"] == 200
    again = tmp_path / "again.csv"
    run_cli("profile", "--space", "tiny", "--sample", "200", "--out", again, "--seed", "3")
    assert again.read_text() == out.read_text()  # seeded


def test_profile_arch_file_from_the_user(run_cli, tmp_path):
    path = tmp_path / "a.json"
    result = run_cli("profile", "--space", "attentive-nas", "--arch", "a1", "--json")
    path.write_text(json.dumps(result.json()["arch"]))
    again = run_cli("profile", "--space", "attentive-nas", "--arch", path, "--json").json()
    assert again["mflops"] == result.json()["mflops"]


def test_bad_inputs_are_one_line_errors(run_cli, tmp_path):
    bad_space = tmp_path / "bad.yaml"
    bad_space.write_text("name: x\nnum_classes: 10\nresolutions: [32]\nfirst_conv: {widths: [8]}\nhead: {widths: [16]}\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [
        (["profile", "--space", "imagenet"], ["unknown space 'imagenet'"]),
        (["profile", "--space", bad_space], ["key 'stages': missing"]),
        (["profile", "--arch", '{"resolution": 192'], ["not valid JSON"]),
        (["profile", "--arch", "a0", "--space", "tiny"], ["'a0'"]),
        (["profile", "--arch", json.dumps({"resolution": 192, "width": [16] * 9, "depth": [1] * 7,
                                           "kernel_size": [3] * 7, "expand_ratio": [1] * 7})],
         ["width[2] = 16", "mb2", "allowed: 24, 32"]),
        (["profile", "--space", "tiny", "--sample", "5", "--out", blocker / "t.csv"], ["cannot write"]),
        (["profile", "--space", "tiny", "--sample", "5", "--out", tmp_path], ["cannot write"]),
        (["profile", "--space", "tiny", "--sample", "5"], ["--sample needs --out"]),
        (["profile", "--space", "tiny", "--sample", "0", "--out", tmp_path / "x.csv"], ["--sample"]),
        (["profile", "--no-such-flag"], ["No such option"]),
        (["profile", "--arch", "min", "--latency", "--device", "tpu"], ["unknown --device 'tpu'"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli(*args), *fragments)
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.slow
def test_python_dash_m_and_exit_codes():
    ok = subprocess.run([sys.executable, "-m", "anas", "profile", "--space", "tiny", "--arch", "min", "--json"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["mflops"] > 0
    bad = subprocess.run([sys.executable, "-m", "anas", "profile", "--space", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    helped = subprocess.run([sys.executable, "-m", "anas", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "profile" in helped.stdout
