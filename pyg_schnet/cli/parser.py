"""The one argument parser every ``pyg-schnet`` command uses: a bad command
line is one :class:`~pyg_schnet.errors.UserError` line (no usage dump), and
an unknown config flag names the valid keys."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from pyg_schnet.errors import UserError

ROOT_HELP = "QM9 root (default: $PYG_SCHNET_DATA, else ~/.cache/pyg_schnet/qm9)"


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
