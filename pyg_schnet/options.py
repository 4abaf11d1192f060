"""A component's settings from its constructor: the arguments (minus those
the model or config gives it), their types from the annotations and their
descriptions from the PyG-style ``Args:`` docstring, so the config, the CLI's
help and the docs cannot drift apart. Used for filters
(:mod:`pyg_schnet.filters`) and models (:mod:`pyg_schnet.models`)."""
from __future__ import annotations

import inspect
import re
from typing import Any, Dict, Optional, Sequence, get_type_hints


def constructor_options(cls: type, exclude: Sequence[str] = ()) -> Dict[str, inspect.Parameter]:
    """The constructor arguments of ``cls`` except ``exclude``, in signature
    order, with their defaults."""
    params = inspect.signature(cls).parameters
    return {k: p for k, p in params.items()
            if k not in exclude and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def constructor_option_types(cls: type, exclude: Sequence[str] = ()) -> Dict[str, Any]:
    """Type of each option (from the constructor's annotations)."""
    hints = get_type_hints(cls.__init__)  # type: ignore[misc]
    return {k: hints.get(k, Any) for k in constructor_options(cls, exclude)}


_ARG_LINE = re.compile(r"^\s{4,}(\w+) \(([^)]*)\):\s*(.*)$")


def constructor_option_help(cls: type, exclude: Sequence[str] = ()) -> Dict[str, str]:
    """Each option's description from the class's ``Args:`` docstring."""
    doc = inspect.getdoc(cls) or ""
    out: Dict[str, str] = {}
    current: Optional[str] = None
    in_args = False
    for line in doc.splitlines():
        if line.strip() == "Args:":
            in_args = True
            continue
        if not in_args:
            continue
        m = _ARG_LINE.match("    " + line)
        if m and line.startswith("    ") and not line.startswith("        "):
            current = m.group(1)
            out[current] = m.group(3)
        elif current is not None and line.strip():
            out[current] += " " + line.strip()
        elif not line.strip():
            current = None
    valid = constructor_options(cls, exclude)
    return {k: re.sub(r"\s*\(default: .*\)\s*$", "", v).replace(":obj:", "").replace(":class:", "")
            .replace("`", "") for k, v in out.items() if k in valid}
