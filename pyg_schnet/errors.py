"""User-facing errors: the CLI prints these as one line and exits non-zero."""

from typing import Optional


class UserError(ValueError):
    """A bad input (config, file, molecule, directory) the user can fix.

    The CLI catches it, prints ``error: <message>`` on one line to stderr and
    exits with status 2; library users get a :class:`ValueError`.
    """


class RunInUse(UserError):
    """Another live process holds a run directory (its lock). A study sitting
    leaves such a run to that process instead of failing it."""


def read_text(path: str, what: str, max_bytes: Optional[int] = None) -> str:
    """The UTF-8 text of a user-given file, or a UserError saying why not
    (``what`` names the file in the message, e.g. ``"config file"``); a file
    longer than ``max_bytes`` is refused after reading that much (so
    ``/dev/zero`` ends too)."""
    import os.path as osp

    if not osp.exists(path):
        raise UserError(f"{what} {path} does not exist")
    if osp.isdir(path):
        raise UserError(f"{what} {path} is a directory")
    try:
        with open(path, "rb") as f:
            raw = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except PermissionError:
        raise UserError(f"{what} {path} is not readable") from None
    if max_bytes is not None and len(raw) > max_bytes:
        raise UserError(f"{what} {path} is larger than {max_bytes:,} bytes, the limit for a {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text") from None


def check_text(what: str, text: str) -> str:
    """``text`` (a name or a path the user gave), or a UserError if it holds a
    control character (a newline, a tab, NUL): such a name breaks the one-line
    messages, CSV rows and file names it ends up in."""
    bad = next((c for c in text if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise UserError(f"{what} {text!r} holds a control character ({bad!r}); use printable text")
    return text
