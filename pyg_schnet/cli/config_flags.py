"""``pyg-schnet train``'s flags, generated from the config schema and the
registries: one ``--key`` per :class:`~pyg_schnet.run.config.Config` field,
``--filter.OPTION`` and ``--model.OPTION`` per option of every registered
filter and model (typed and described from their constructors), and the old
flat filter-option flags as aliases. The flags keep their raw text: it is
converted with the config, so a flag and a config file give the same errors."""

from __future__ import annotations

import argparse
import inspect
from dataclasses import fields
from typing import Any, Dict, Sequence, Union

from pyg_schnet.cli.parser import Parser
from pyg_schnet.nn.filters import FILTERS
from pyg_schnet.nn.models import MODELS
from pyg_schnet.registry import Registry
from pyg_schnet.run.config import FIELD_TYPES, KEYS, LEGACY_FILTER_KEYS, Config


def _metavar(tp: Any) -> str:
    if getattr(tp, "__origin__", None) is list:
        return "STR[,STR...]"
    optional = getattr(tp, "__origin__", None) is Union and type(None) in tp.__args__
    base = [a for a in tp.__args__ if a is not type(None)][0] if optional else tp
    name = {bool: "BOOL", int: "INT", float: "FLOAT", str: "STR"}.get(base, "VALUE")
    return f"{name}|none" if optional else name


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--key`` flag per :class:`Config` field, ``--model.OPTION`` and
    ``--filter.OPTION`` per option of every registered model and filter, with
    type, default and help; the
    flags keep their raw text (converted with the config, so a flag and a
    config file give the same errors). Old flat option names stay aliases."""
    group = parser.add_argument_group("config keys (override the config file)")
    for f in fields(Config):
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        default = getattr(Config(), f.name)
        if f.name in ("filter", "model"):
            metavar, shown = "NAME|MAPPING", default["name"]
        else:
            metavar, shown = _metavar(FIELD_TYPES[f.name]), default
        group.add_argument(
            *names,
            dest=f.name,
            metavar=metavar,
            default=argparse.SUPPRESS,
            help=f"{f.metadata['help']} (default: {shown})",
        )
    _add_option_arguments(parser, MODELS, aliases=())
    _add_option_arguments(parser, FILTERS, aliases=LEGACY_FILTER_KEYS)


def _add_option_arguments(
    parser: argparse.ArgumentParser, registry: Registry, aliases: Sequence[str]
) -> None:
    """``--KIND.OPTION`` for every option of every registered component of
    the registry's kind (``filter`` or ``model``), naming the components that
    take it and their defaults; an option in ``aliases`` also keeps its old
    flat flag."""
    kind = registry.kind
    options: Dict[str, Dict[str, Any]] = {}
    for name in registry:
        helps, types = registry.option_help(name), registry.option_types(name)
        for key, param in registry.options(name).items():
            entry = options.setdefault(
                key, {"takers": [], "help": helps.get(key, ""), "type": types[key], "defaults": []}
            )
            entry["takers"].append(name)
            if (
                param.default is not inspect.Parameter.empty
                and param.default not in entry["defaults"]
            ):
                entry["defaults"].append(param.default)
    group = parser.add_argument_group(
        f"{kind} options (--{kind}.OPTION; for the chosen {kind} only)"
    )
    for key, entry in options.items():
        names = [f"--{kind}.{key}"] + (
            [f"--{key}", f"--{key.replace('_', '-')}"] if key in aliases else []
        )
        defaults = "/".join(str(d) for d in entry["defaults"]) or "required"
        group.add_argument(
            *dict.fromkeys(names),
            dest=f"{kind}.{key}",
            metavar=_metavar(entry["type"]),
            default=argparse.SUPPRESS,
            help=f"{entry['help']} [{', '.join(entry['takers'])}] (default: {defaults})",
        )


def overrides_from(namespace: argparse.Namespace, argv: Sequence[str]) -> Dict[str, Any]:
    """The config keys set on the command line; an option given by its old
    flat flag (``--num_gaussians=25``) keeps its flat key, and with it its
    old meaning (:data:`LEGACY_FILTER_KEYS`)."""
    got = {
        k: v for k, v in vars(namespace).items() if k in KEYS or k.startswith(("filter.", "model."))
    }
    used = {a.split("=", 1)[0][2:].replace("-", "_") for a in argv if a.startswith("--")}
    out: Dict[str, Any] = {}
    for key, value in got.items():
        opt = key[len("filter.") :] if key.startswith("filter.") else None
        out[opt if opt in LEGACY_FILTER_KEYS and opt in used else key] = value
    return out


def parse_overrides(args: Sequence[str]) -> Dict[str, Any]:
    """``["--batch-size", "100", "--lr=1e-3"]`` -> ``{"batch_size": "100", "lr": "1e-3"}``
    (the raw text of every config flag given)."""
    parser = Parser(prog="", add_help=False, allow_abbrev=False, config_flags=True)
    add_config_arguments(parser)
    return overrides_from(parser.parse_args(list(args)), args)
