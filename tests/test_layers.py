"""The import arrows of the package point down the pipeline: cli -> export -> search ->
evaluate -> train -> latency -> nn, predict -> space -> the shared utilities."""

import ast
import subprocess
import sys
from pathlib import Path

import anas

LAYERS = ["", "space", "runtime data", "nn predict", "latency", "train autospace", "evaluate published", "search",
          "export", "cli"]
RANK = {package: rank for rank, names in enumerate(LAYERS) for package in names.split()}
ROOT = Path(anas.__file__).parent


def _layer(module: str) -> int:
    if module == "anas.__main__":  # `python -m anas` is the command line
        return RANK["cli"]
    parts = module.split(".")
    return RANK.get(parts[1], 0) if len(parts) > 1 and parts[1] in RANK else 0


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return [name for name in found if name == "anas" or name.startswith("anas.")]


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in ROOT.rglob("*.py"):
        module = ".".join(("anas", *path.relative_to(ROOT).with_suffix("").parts))
        for imported in _imports(path):
            if _layer(imported) > _layer(module):
                upward.append(f"{module} imports {imported}")
    assert not upward, upward


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in sys.modules if m.startswith('anas')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_the_training_api_does_not_load_the_command_line():
    assert not any(m.startswith("anas.cli") for m in _loaded_after("import anas.train.loop"))


def test_loading_a_run_for_export_or_search_does_not_load_the_training_loop():
    loaded = _loaded_after("import anas.export.subnet, anas.search.runner")
    assert "anas.train.loop" not in loaded and "anas.train.step" not in loaded
    assert not any(m.startswith("anas.cli") for m in loaded)
