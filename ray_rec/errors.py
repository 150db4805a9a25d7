"""User-facing errors: bad input that the CLI reports in one sentence, without a stack trace."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input (a file, a config value, a device request). The message says what and where."""


def at(path: str | Path, line: int | None = None, field: str | None = None) -> str:
    """Location prefix for error messages: ``file:line: field 'x':``."""
    where = str(path)
    if line is not None:
        where += f":{line}"
    if field is not None:
        where += f": field {field!r}"
    return where + ":"
