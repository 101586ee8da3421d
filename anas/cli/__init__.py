"""The ``anas`` command line: parses arguments and calls the core, nothing more.

Every command is a module of this package that registers itself on ``app``. ``main``
turns the user's mistakes (``AnasError`` and click's usage errors) into one line on stderr
and exit code 2.
"""

from __future__ import annotations

import os
import sys
import warnings
from importlib.metadata import entry_points

import typer

from anas import __version__
from anas.errors import AnasError, AnasWarning, one_line

app = typer.Typer(
    name="anas",
    help="Two-stage, weight-sharing neural architecture search (AttentiveNAS style).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"anas {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Two-stage, weight-sharing neural architecture search (AttentiveNAS style)."""


PLUGIN_GROUP = "anas.plugins"
"""Entry-point group of packages that add plug-ins: each entry point names a module whose
import registers them (``[project.entry-points."anas.plugins"]`` in the package's
pyproject.toml); the command line imports them all before it runs."""


def load_plugin_modules() -> list[str]:
    """Import the modules of every ``anas.plugins`` entry point; a module that fails to
    import is a one-line error naming it."""
    loaded = []
    for entry_point in entry_points(group=PLUGIN_GROUP):
        try:
            entry_point.load()
        except Exception as exc:  # whatever a third-party module raises on import
            raise AnasError(f"plug-in {entry_point.name} ({entry_point.value}) failed to load: {one_line(exc)}") from None
        loaded.append(entry_point.name)
    return loaded


# Third-party plug-ins first, so that the commands' help lists them; an error is reported by main().
try:
    load_plugin_modules()
    _plugin_error: AnasError | None = None
except AnasError as exc:
    _plugin_error = exc

# The commands register themselves, in the order of the user's journey.
from anas.cli import profile_command as _profile  # noqa: E402,F401,I001  (registers `anas profile`)
from anas.cli import latency_table_command as _latency_table  # noqa: E402,F401  (registers `anas latency-table`)
from anas.cli import space_commands as _space  # noqa: E402,F401  (registers `anas space reduce|evolve|show`)
from anas.cli import train_command as _train  # noqa: E402,F401  (registers `anas train`)
from anas.cli import predict_fit_command as _predict_fit  # noqa: E402,F401  (registers `anas predict-fit`)
from anas.cli import search_command as _search  # noqa: E402,F401  (registers `anas search`)
from anas.cli import standalone_command as _standalone  # noqa: E402,F401  (registers `anas standalone`)
from anas.cli import export_command as _export  # noqa: E402,F401  (registers `anas export`)
from anas.cli import import_command as _importer  # noqa: E402,F401  (registers `anas import`)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of raising SystemExit."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", AnasWarning)  # each warning once per place
        warnings.showwarning = _show_warning
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        if _plugin_error is not None:
            raise _plugin_error
        result = app(args=argv, prog_name="anas", standalone_mode=False)
    except AnasError as exc:
        _fail(str(exc))
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # click-style usage errors: bad option, bad value
        message = " ".join(exc.format_message().split())
        if not message:  # bare `anas`: the help was shown, nothing went wrong
            return 0
        _fail(message)
        return getattr(exc, "exit_code", 2)
    except typer.Abort:
        _fail("aborted")
        return 130
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except MemoryError:  # a size the memory checks could not foresee (another process took the memory)
        _fail("out of memory: ask for less (fewer subnets, a smaller batch)")
        return 2
    return result if isinstance(result, int) else 0


def _fail(message: str) -> None:
    print(f"anas: error: {message}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """anas's own warnings as one line on stderr (on rank 0 of a ``torchrun`` job only);
    other libraries' as Python prints them."""
    if not issubclass(category, AnasWarning):
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", file=sys.stderr)
    elif os.environ.get("RANK", "0") == "0":
        print(f"anas: warning: {message}", file=sys.stderr)
