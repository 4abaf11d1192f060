"""Registries of named components (filters, models): :class:`Registry`.

A component's settings come from its constructor: the arguments (minus those
the model or config gives it), their types from the annotations and their
descriptions from the PyG-style ``Args:`` docstring, so the config, the CLI's
help and the docs cannot drift apart. An entry also declares which of the
config's own keys it takes (``num_filters``, or ``filter.num_gaussians`` for
one option of the filter), so no code outside the registry asks for a
component by name. Used for filters (:mod:`pyg_schnet.nn.filters`) and models
(:mod:`pyg_schnet.nn.models`). An entry may name its class as
``"module:Class"``, imported when it is first asked for: a model built on
PyG then costs nothing to a command that never uses it.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from importlib import import_module
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
    get_type_hints,
)

from pyg_schnet.errors import UserError


def constructor_options(cls: type, exclude: Sequence[str] = ()) -> Dict[str, inspect.Parameter]:
    """The constructor arguments of ``cls`` except ``exclude``, in signature
    order, with their defaults."""
    params = inspect.signature(cls).parameters
    return {
        k: p
        for k, p in params.items()
        if k not in exclude and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


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
    return {
        k: re.sub(r"\s*\(default: .*\)\s*$", "", v)
        .replace(":obj:", "")
        .replace(":class:", "")
        .replace("`", "")
        for k, v in out.items()
        if k in valid
    }


@dataclass(frozen=True)
class Entry:
    """One registered component.

    Args:
        name (str): Its registry name.
        origin (type or str): Its class, or where the class is defined,
            ``"module:Class"``, imported on first use (:attr:`cls`).
        given (tuple): Constructor arguments the caller supplies (not options).
        config_keys (dict): Config keys it takes, each mapped to the
            constructor argument it sets (a dotted key is an option of a nested
            setting, e.g. ``filter.num_gaussians``).
        builder (callable, optional): Builds it instead of the class.
        has_options (bool): Its constructor arguments are options of its own
            (``model: {name: ..., OPTION: ...}``).
    """

    name: str
    origin: Union[type, str]
    given: Sequence[str] = ()
    config_keys: Mapping[str, str] = field(default_factory=dict)
    builder: Optional[Callable[..., Any]] = None
    has_options: bool = True

    @property
    def cls(self) -> type:
        """Its class (its module imported here when :attr:`origin` names it)."""
        if isinstance(self.origin, type):
            return self.origin
        module, _, name = self.origin.partition(":")
        cls: type = getattr(import_module(module), name)
        return cls

    def takes(self, key: str) -> bool:
        """Does it take config key ``key`` (``filter``, ``fast``, ...)?"""
        return key in self.config_keys


class Registry:
    """Named components of one kind.

    Args:
        kind (str): What they are (``filter``, ``model``), for messages.
        given (sequence of str): Constructor arguments every entry gets from
            its caller rather than from its own settings. (default: :obj:`()`)
    """

    def __init__(self, kind: str, given: Sequence[str] = ()) -> None:
        self.kind, self.given = kind, tuple(given)
        self._entries: Dict[str, Entry] = {}

    def register(
        self,
        name: str,
        origin: Union[type, str],
        *,
        given: Sequence[str] = (),
        config_keys: Optional[Mapping[str, str]] = None,
        builder: Optional[Callable[..., Any]] = None,
        has_options: bool = True,
    ) -> None:
        """Add a component: its class, or ``"module:Class"`` to import on
        first use (:attr:`Entry.cls`)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(
            name, origin, self.given + tuple(given), dict(config_keys or {}), builder, has_options
        )

    def unregister(self, name: str) -> None:
        """Remove a component (a test's throwaway filter, say)."""
        self.entry(name)
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> List[str]:
        return list(self._entries)

    def entry(self, name: str) -> Entry:
        """The entry of ``name``; an unknown name fails listing the choices."""
        if name not in self._entries:
            raise UserError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}"
            )
        return self._entries[name]

    def cls(self, name: str) -> type:
        return self.entry(name).cls

    def options(self, name: str) -> Dict[str, inspect.Parameter]:
        """The settings of ``name``: its constructor arguments except the
        given ones, in signature order, with their defaults."""
        e = self.entry(name)
        return constructor_options(e.cls, e.given) if e.has_options else {}

    def option_types(self, name: str) -> Dict[str, Any]:
        e = self.entry(name)
        return constructor_option_types(e.cls, e.given) if e.has_options else {}

    def option_help(self, name: str) -> Dict[str, str]:
        e = self.entry(name)
        return constructor_option_help(e.cls, e.given) if e.has_options else {}

    def check_options(self, name: str, options: Mapping[str, Any]) -> None:
        """A :class:`UserError` listing the valid options when ``options``
        holds a key that ``name`` does not take."""
        valid = self.options(name)
        unknown = [k for k in options if k not in valid]
        if unknown:
            raise UserError(
                f"{self.kind} {name!r} has no option {unknown[0]!r}; its options: "
                f"{', '.join(valid) or 'none'}"
            )

    def arguments(self, name: str) -> List[str]:
        """Every argument ``name``'s constructor takes, or its builder (and,
        for a builder that passes ``**kwargs`` on, the class's constructor)."""
        e = self.entry(name)
        out: List[str] = []
        for fn in (e.builder, e.cls) if e.builder is not None else (e.cls,):
            params = inspect.signature(fn).parameters
            out += [
                k
                for k, p in params.items()
                if k not in out and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
            if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
                break
        return out

    def build(self, name: str, **kwargs: Any) -> Any:
        """Build ``name``; an argument it does not take is an error naming the
        ones it does (a builder checks its own)."""
        e = self.entry(name)
        if e.builder is not None:
            return e.builder(**kwargs)
        taken = self.arguments(name)
        unknown = [k for k in kwargs if k not in taken]
        if unknown:
            raise UserError(
                f"{self.kind} {name!r} takes no argument {unknown[0]!r}; it takes: "
                f"{', '.join(taken)}"
            )
        return e.cls(**kwargs)
