import pytest

from anas.errors import OutputError
from anas.io import atomic_write, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "b.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["b.txt"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_failed_write_removes_the_folders_it_created(tmp_path):
    def broken(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError):
        atomic_write(tmp_path / "new" / "deeper" / "x.txt", broken)
    assert not list(tmp_path.iterdir())
    (tmp_path / "kept").mkdir()
    with pytest.raises(OutputError):
        atomic_write(tmp_path / "kept" / "new" / "x.txt", broken)
    assert [p.name for p in tmp_path.rglob("*")] == ["kept"]


def test_unwritable_destinations(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        atomic_write_text(blocker / "out.csv", "x")
    with pytest.raises(OutputError, match="is a directory"):
        atomic_write_text(tmp_path, "x")
