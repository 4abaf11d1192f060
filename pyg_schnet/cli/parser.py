"""The one argument parser every ``pyg-schnet`` command uses: a bad command
line is one :class:`~pyg_schnet.errors.UserError` line (no usage dump), and
an unknown config flag names the valid keys."""

from __future__ import annotations

import argparse
import math
import re
from typing import Any, Callable, NoReturn

from pyg_schnet.errors import UserError

ROOT_HELP = "QM9 root (default: $PYG_SCHNET_DATA, else ~/.cache/pyg_schnet/qm9)"
#: ``--device`` of every command that runs a model (docs/usage.md, GPUs).
DEVICE_HELP = "cpu or cuda[:N] (a CUDA build of torch and a GPU; default: cpu)"


class Parser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose errors are one line.

    Args:
        config_flags (bool): The parser holds config flags
            (:mod:`pyg_schnet.cli.config_flags`): an unrecognised flag is
            reported as an unknown config key, with the valid ones.
            (default: :obj:`False`)
        **kwargs: :class:`argparse.ArgumentParser`'s arguments.
    """

    def __init__(self, *args: Any, config_flags: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_flags = config_flags

    def error(self, message: str) -> NoReturn:
        if self.config_flags and "unrecognized arguments:" in message:
            # imported here: the config module loads torch, and a parser of the
            # command line is built before any command needs it
            from pyg_schnet.run.config import unknown_key

            first = message.split("unrecognized arguments:", 1)[1].split()[0]
            if not first.startswith("-"):  # a bare word, not a flag
                hint = (
                    f"; a config file is given as --config {first}"
                    if first.endswith((".yaml", ".yml"))
                    else ""
                )
                raise UserError(
                    f"unexpected argument {first!r}{hint} (config keys are flags: --KEY VALUE)"
                )
            raise unknown_key(first)
        raise UserError(f"{self.prog}: {message}" if self.prog else message)


def plain_text(doc: str) -> str:
    """A reStructuredText docstring as ``--help`` prints it: a role names its
    target (``:func:`~pkg.mod.f``` becomes ``f``, without ``~`` the full
    path) and literals lose their backquotes (````x```` becomes ``x``)."""

    def role(m: re.Match) -> str:
        target = m.group(1)
        return target.rsplit(".", 1)[-1] if target.startswith("~") else target

    doc = re.sub(r":[a-z]+:`([^`]+)`", role, doc)
    return doc.replace("``", "")


def at_least(least: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``least`` (a size, a count),
    else the parser's one error line naming the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


#: Sizes and counts: at least 1.
POSITIVE = at_least(1)
#: Warm-up rounds and the like: at least 0.
NON_NEGATIVE = at_least(0)


def seed(text: str) -> int:
    """An argparse ``type``: a seed numpy's and torch's generators take."""
    from pyg_schnet.run.config import MAX_SEED

    value = NON_NEGATIVE(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SEED} (2**32 - 1), got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number above 0 (a cutoff in Å)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
