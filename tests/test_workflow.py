import pytest

"""The card's pipeline with no paths, from a clean folder: each command finds what the one
before wrote under ./runs and says which folder it took."""

from conftest import assert_one_line_error


@pytest.mark.slow
def test_train_predict_fit_search_export_with_no_paths(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_cli("search", "--flops", "1-2"), "no run folder under runs/", "anas predict-fit")
    assert_one_line_error(run_cli("export", "--to", "onnx"), "no run folder under runs/", "anas train")
    assert_one_line_error(run_cli("predict-fit"), "no run folder under runs/", "anas train")

    trained = run_cli("train", "--epochs", "1", "--prior-samples", "2000", "--calib-batches", "2", "--json")
    assert trained.code == 0, trained.stderr
    run = trained.json()["run_dir"]
    assert run.startswith("runs/")

    fitted = run_cli("predict-fit", "--samples", "24", "--calib-batches", "1", "--no-plot")
    assert fitted.code == 0, fitted.stderr
    assert f"run: {run}" in fitted.stderr
    assert (tmp_path / run / "predictor.json").is_file()

    found = run_cli("search", "--flops", "1-2", "--budget", "200", "--json")
    assert found.code == 0, found.stderr
    assert found.json()["chosen"] == {"predictor": run}
    assert (tmp_path / run / "search-1-2" / "best.json").is_file()

    exported = run_cli("export", "--to", "onnx", "--json")
    assert exported.code == 0, exported.stderr
    data = exported.json()
    assert data["ok"] and data["chosen"] == ["run", "arch"] and data["arch_spec"].endswith("search-1-2/best.json")
    assert (tmp_path / run / "exports" / "best.onnx").is_file()
