"""Property-based fuzzing of every command's options and file readers (hypothesis).

Each test feeds a command generated malformed values (numbers out of range, non-finite
floats, wrong types, huge sizes) or malformed files (truncated, corrupted, binary) and
asserts what anas promises: exit code 2 with one line on stderr and no traceback, and no
file created or changed in the folders the command writes to. A corrupted file that still
parses may be accepted (exit code 0); it must never give a traceback.

The number of examples per test is ``ANAS_FUZZ_EXAMPLES`` (default 12, which keeps the
suite fast); ``benchmarks/fuzz.py`` runs the same tests with many more and records the
result. Examples are derandomized: the same values every run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anas.cli import main
from anas.space.arch import sample_archs
from anas.space.cost import batch_costs
from anas.space.schema import load_space, space_to_dict
from anas.space.table_format import archs_to_frame
from tests.conftest import train_tiny_run

EXAMPLES = int(os.environ.get("ANAS_FUZZ_EXAMPLES", "12"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# -- malformed values, by what an option takes ---------------------------------------------

NOT_A_NUMBER = st.sampled_from(["abc", "", "1,5", "0x1G", "--", "1e", "[]", "None", "true"])
NON_FINITE = st.sampled_from(["nan", "inf", "-inf", "NaN", "1e999", "-1e999"])
HUGE = st.integers(min_value=10**13, max_value=10**30).map(str)


def below(minimum: int) -> st.SearchStrategy[str]:
    """Integers under ``minimum``, as text."""
    return st.integers(min_value=-(10**30), max_value=minimum - 1).map(str)


def not_an_int() -> st.SearchStrategy[str]:
    return st.one_of(NOT_A_NUMBER, NON_FINITE, st.floats(allow_nan=False, allow_infinity=False)
                     .filter(lambda x: x != int(x)).map(repr))


def bad_count(minimum: int = 1, huge: bool = False) -> st.SearchStrategy[str]:
    """What an option taking a whole number >= ``minimum`` must refuse."""
    return st.one_of(below(minimum), not_an_int(), *([HUGE] if huge else []))


BAD_SEED = st.one_of(below(0), st.integers(min_value=2**31, max_value=10**30).map(str), not_an_int())


def bad_positive() -> st.SearchStrategy[str]:
    return st.one_of(st.floats(max_value=0.0, allow_nan=False).map(repr), NON_FINITE, NOT_A_NUMBER)


def bad_fraction(zero_allowed: bool = False) -> st.SearchStrategy[str]:
    """What an option taking a number in (0, 1), or [0, 1) when ``zero_allowed``, must refuse."""
    low = (lambda x: x >= 0) if zero_allowed else (lambda x: x > 0)
    outside = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not (low(x) and x < 1))
    return st.one_of(outside.map(repr), NON_FINITE, NOT_A_NUMBER)


# -- a run folder, and snapshots of folders ------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A one-epoch supernet of ``tiny`` on the fake data, with a predictor and records."""
    folder = train_tiny_run(tmp_path_factory.mktemp("fuzz") / "run")
    assert main(["predict-fit", "--run", str(folder), "--samples", "10", "--no-plot", "--json"]) == 0
    return folder


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file under ``folders`` with a hash of its content."""
    files = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def run_cli(capsys, args: list) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(capsys, args: list, *watched: Path) -> None:
    """Exit code 2, one line on stderr, no traceback, nothing written under ``watched``."""
    before = snapshot(*watched)
    code, _, err = run_cli(capsys, args)
    assert code == 2, (args, code, err)
    assert err.count("\n") == 1 and err.startswith("anas: error: "), (args, err)
    assert "Traceback" not in err
    assert snapshot(*watched) == before, args


def assert_handled(capsys, args: list, *watched: Path) -> int:
    """Exit code 0 or 2, never a traceback; on 2 one line and nothing written."""
    before = snapshot(*watched)
    code, _, err = run_cli(capsys, args)
    assert code in (0, 2), (args, code, err)
    assert "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("anas: error: "), (args, err)
        assert snapshot(*watched) == before, args
    return code


# -- options -------------------------------------------------------------------------------


def drawn(data, options: dict[str, st.SearchStrategy[str]]) -> tuple[str, str]:
    """One of ``options`` and a malformed value for it."""
    option = data.draw(st.sampled_from(sorted(options)))
    return option, data.draw(options[option])


PROFILE_OPTIONS = {
    "--sample": bad_count(huge=True), "--seed": BAD_SEED, "--num-classes": bad_count(),
    "--batch-size": bad_count(), "--runs": bad_count(), "--warmup": bad_count(0),
}


@FUZZ
@given(data=st.data())
def test_profile_options(data, capsys, tmp_path):
    option, value = drawn(data, PROFILE_OPTIONS)
    out = tmp_path / "profile"
    shutil.rmtree(out, ignore_errors=True)
    extra = ["--arch", "random"] if option != "--sample" else ["--out", out / "t.csv"]
    if option in ("--batch-size", "--runs", "--warmup"):
        extra = ["--arch", "min", "--latency"]
    assert_refused(capsys, ["profile", "--space", "tiny", *extra, option, value], tmp_path)


TRAIN_OPTIONS = {
    "--epochs": bad_count(), "--batch-size": bad_count(), "--lr": bad_positive(), "--seed": BAD_SEED,
    "--num-subnets": bad_count(2), "--calib-batches": bad_count(), "--warmup-epochs": st.one_of(NOT_A_NUMBER,
                                                                                                 below(0)),
    "--drop-connect": bad_fraction(zero_allowed=True), "--label-smoothing": bad_fraction(zero_allowed=True), "--workers": bad_count(0),
    "--save-every": bad_count(0), "--eval-every": bad_count(0), "--holdout": bad_fraction(zero_allowed=True),
    "--grad-clip": st.one_of(NOT_A_NUMBER, st.sampled_from(["-1", "nan", "-inf"])),
    "--prior-samples": bad_count(), "--momentum": st.one_of(NOT_A_NUMBER, NON_FINITE, st.sampled_from(["-0.1", "1.5"])),
    "--weight-decay": st.one_of(NOT_A_NUMBER, NON_FINITE, st.sampled_from(["-1e-5"])),
}


@FUZZ
@given(data=st.data())
def test_train_options(data, capsys, tmp_path):
    option, value = drawn(data, TRAIN_OPTIONS)
    assert_refused(capsys, ["train", "--data", "fake", "--run-dir", tmp_path / "run", option, value], tmp_path)


PREDICT_FIT_OPTIONS = {
    "--samples": bad_count(2, huge=True), "--calib-batches": bad_count(), "--seed": BAD_SEED,
    "--n-estimators": bad_count(huge=True), "--learning-rate": bad_positive(), "--num-leaves": bad_count(2),
    "--test-fraction": bad_fraction(),
}


@FUZZ
@given(data=st.data())
def test_predict_fit_options(data, run, capsys, tmp_path):
    option, value = drawn(data, PREDICT_FIT_OPTIONS)
    assert_refused(capsys, ["predict-fit", "--run", run, "--out", tmp_path / "p", option, value], run, tmp_path)


SEARCH_OPTIONS = {
    "--budget": bad_count(8, huge=True), "--seed": BAD_SEED, "--calib-batches": bad_count(),
    "--verify": bad_count(0), "--latency-batch": bad_count(), "--latency-runs": bad_count(),
    "--flops": st.one_of(NOT_A_NUMBER, st.sampled_from(["5-1", "nan-2", "1-inf", "-1-2", "1", "1-2-3", "a-b"])),
    "--params": st.sampled_from(["3-1", "nan-1", "x", "0-inf"]),
}


@FUZZ
@given(data=st.data())
def test_search_options(data, run, capsys, tmp_path):
    option, value = drawn(data, SEARCH_OPTIONS)
    flops = [] if option == "--flops" else ["--flops", "0-5"]
    assert_refused(capsys, ["search", *flops, "--predictor", run, "--out", tmp_path / "s", option, value],
                   run, tmp_path)


EXPORT_OPTIONS = {
    "--calib-batches": bad_count(), "--opset": st.one_of(below(7), not_an_int(), HUGE),
    "--tolerance": st.one_of(NOT_A_NUMBER, st.sampled_from(["-1", "nan", "-inf"])),
    "--to": st.sampled_from(["", "onnxx", "tflite", "1"]),
}


@FUZZ
@given(data=st.data())
def test_export_options(data, run, capsys, tmp_path):
    option, value = drawn(data, EXPORT_OPTIONS)
    to = [] if option == "--to" else ["--to", "onnx"]
    assert_refused(capsys, ["export", "--run", run, *to, "--out", tmp_path / "e" / "m.onnx", option, value],
                   run, tmp_path)


STANDALONE_OPTIONS = {"--subnets": bad_count(3, huge=True), "--epochs": bad_count(), "--seed": BAD_SEED}


@FUZZ
@given(data=st.data())
def test_standalone_options(data, run, capsys, tmp_path):
    option, value = drawn(data, STANDALONE_OPTIONS)
    assert_refused(capsys, ["standalone", "--run", run, "--out", tmp_path / "sa", option, value], run, tmp_path)


# -- files ---------------------------------------------------------------------------------


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` truncated, with bytes overwritten, or replaced by binary noise."""
    truncated = st.integers(min_value=0, max_value=max(len(valid) - 1, 0)).map(lambda n: valid[:n])
    overwritten = st.tuples(st.integers(min_value=0, max_value=max(len(valid) - 1, 0)),
                            st.binary(min_size=1, max_size=16)).map(
        lambda t: valid[:t[0]] + t[1] + valid[t[0] + len(t[1]):])
    return st.one_of(truncated, overwritten, st.binary(max_size=512))


def _records_bytes() -> bytes:
    space = load_space("tiny")
    batch = sample_archs(space, 30, np.random.default_rng(0))
    frame = archs_to_frame(space, batch, batch_costs(space, batch))
    frame["acc1"] = np.linspace(50, 90, 30)
    return frame.to_csv(index=False).encode()


@FUZZ
@given(content=mutations(_records_bytes()))
def test_records_file(content, capsys, tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(content)
    out = tmp_path / "o"
    shutil.rmtree(out, ignore_errors=True)
    assert_handled(capsys, ["predict-fit", "--records", path, "--space", "tiny", "--out", out, "--no-plot",
                            "--n-estimators", "20"], out)


@FUZZ
@given(content=mutations(yaml.safe_dump(space_to_dict(load_space("tiny"))).encode()))
def test_space_file(content, capsys, tmp_path):
    path = tmp_path / "space.yaml"
    path.write_bytes(content)
    assert_handled(capsys, ["profile", "--space", path, "--json"], tmp_path)


@FUZZ
@given(content=st.one_of(st.binary(max_size=256), st.sampled_from([b"- 1\n- 2\n", b"42", b"epochs: [1", b"\xff\xfe",
                                                                  b"epochs: -3\n", b"lr: .nan\n", b"bogus: 1\n"])))
def test_config_file(content, capsys, tmp_path):
    """Only contents that cannot be a valid configuration: a valid one would start a run."""
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    parsed = None
    try:
        parsed = yaml.safe_load(content)
    except yaml.YAMLError:
        pass
    if not parsed and parsed not in (0, False):
        return  # an empty file or mapping is a valid (default) configuration
    assert_refused(capsys, ["train", "--data", "fake", "--config", path, "--run-dir", tmp_path / "run"], tmp_path)


@FUZZ
@given(content=mutations(b'[{"resolution": 32, "width": [16, 16, 24, 32, 128], "depth": [2, 2, 3], '
                         b'"kernel_size": [5, 5, 5], "expand_ratio": [1, 6, 6]}]'))
def test_subnet_file(content, capsys, tmp_path):
    path = tmp_path / "archs.json"
    path.write_bytes(content)
    assert_handled(capsys, ["profile", "--space", "tiny", "--arch", path, "--json"], tmp_path)


@FUZZ
@given(content=mutations(b"{}"), which=st.sampled_from(["predictor.json", "predictor.txt"]))
def test_predictor_folder(content, which, run, capsys, tmp_path):
    folder = tmp_path / "predictor"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name in ("predictor.json", "predictor.txt"):
        shutil.copy(run / name, folder / name)
    original = (run / which).read_bytes()
    data = content if content != b"{}" else original[: len(original) // 2]
    (folder / which).write_bytes(data)
    assert_handled(capsys, ["search", "--flops", "0-5", "--predictor", folder, "--budget", "16", "--out",
                            tmp_path / "s", "--json"], tmp_path / "s")


@settings(FUZZ, max_examples=max(4, EXAMPLES // 3))
@given(data=st.data())
def test_checkpoint_file(data, run, capsys, tmp_path):
    valid = (run / "checkpoints" / "last.pt").read_bytes()
    content = data.draw(st.one_of(st.integers(0, len(valid) - 1).map(lambda n: valid[:n]), st.binary(max_size=256)))
    folder = tmp_path / "run"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.pt").write_bytes(content)
    assert_refused(capsys, ["export", "--run", folder, "--arch", "min", "--to", "pt"], folder)

