"""The import arrows of the package point down the pipeline (cli -> export -> search ->
evaluate -> train -> latency -> nn, predict -> runtime, data -> space -> the shared
utilities), no import circle remains, and no two modules share a name."""

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anas

LAYERS = ["", "space", "runtime data", "nn predict", "latency", "train autospace", "evaluate published", "search",
          "export", "cli"]
RANK = {package: rank for rank, names in enumerate(LAYERS) for package in names.split()}
ROOT = Path(anas.__file__).parent


def _module_name(path: Path) -> str:
    return ".".join(("anas", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")


MODULES = {_module_name(path): path for path in ROOT.rglob("*.py")}


def _layer(module: str) -> int:
    if module == "anas.__main__":  # `python -m anas` is the command line
        return RANK["cli"]
    parts = module.split(".")
    return RANK.get(parts[1], 0) if len(parts) > 1 and parts[1] in RANK else 0


def _imports(path: Path) -> set[str]:
    """The anas modules ``path`` imports anywhere in it: at the top, inside functions and
    under ``TYPE_CHECKING``. ``from anas.x import y`` imports ``anas.x`` (its ``__init__``
    runs) and, when ``y`` is a module, ``anas.x.y`` too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("anas"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in MODULES)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("anas"))
    return {name for name in found if name in MODULES}


def _graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (a package importing its own submodules to register
    them is no circle: the submodules come after the package)."""
    return {module: {m for m in _imports(path) if m != module and not module_is_package_of(module, m, path)}
            for module, path in MODULES.items()}


def module_is_package_of(module: str, imported: str, path: Path) -> bool:
    return path.name == "__init__.py" and imported.startswith(module + ".")


def test_no_module_imports_a_higher_layer():
    upward = [f"{module} imports {imported}" for module, imports in _graph().items() for imported in imports
              if _layer(imported) > _layer(module)]
    assert not upward, upward


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """The import circles of ``graph`` (each found once, from where the search met it)."""
    cycles, done = [], set()

    def visit(module: str, stack: list[str]) -> None:
        if module in stack:
            cycles.append(" -> ".join(stack[stack.index(module):] + [module]))
            return
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*stack, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return cycles


def test_no_import_circle():
    assert not _cycles(_graph())


def test_the_circle_check_finds_a_planted_circle(tmp_path, monkeypatch):
    """Two modules that import each other, one of them only for type checking, are found."""
    (tmp_path / "a.py").write_text("from anas.b import x\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from anas.a import y\n")
    planted = {f"anas.{name}": tmp_path / f"{name}.py" for name in "ab"}
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {**MODULES, **planted})
    assert _cycles(_graph()) == ["anas.a -> anas.b -> anas.a"]


def test_no_two_modules_or_packages_share_a_name():
    names = Counter(path.stem if path.name != "__init__.py" else path.parent.name
                    for path in ROOT.rglob("*.py") if path.name != "__main__.py" and path.parent != ROOT.parent)
    names["anas"] -= 1  # the top package itself
    assert not [name for name, count in names.items() if count > 1]


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
