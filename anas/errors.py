"""Errors that the user caused and can fix; the CLI prints them as one line and exits 2."""


class AnasError(Exception):
    """A problem with the user's input (arguments, files, data); never a bug in anas."""


class SpaceError(AnasError):
    """A search space that is unknown or malformed."""


class ArchError(AnasError):
    """A subnet description that is malformed or not part of its search space."""


class OutputError(AnasError):
    """A result that cannot be written where the user asked."""


class TableError(AnasError):
    """A subnet table (CSV) that is missing, malformed or off its search space."""


class DataError(AnasError):
    """A dataset that is missing, empty or malformed."""


class CheckpointError(AnasError):
    """A checkpoint or run folder that is missing, corrupt or of another space."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (at most ``limit`` characters), or its type's
    name when it has none: how a library's error is quoted in an anas error."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


class AnasWarning(UserWarning):
    """Something the user should know that does not stop the work; the CLI prints it as
    one line (``anas: warning: ...``), once."""
