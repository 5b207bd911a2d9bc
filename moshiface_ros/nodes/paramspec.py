"""Node parameters as typed dataclasses: one table per node, checked without ROS.

Each node's settings are a frozen dataclass whose fields are made with :func:`param`: the
field's default is the parameter's default, and its metadata carries what
``ros2 param describe`` shows (a description, a range, whether a change needs a restart)
and the allowed words of a text parameter. The node helper (``nodes/params.py``) turns
the same table into ``ParameterDescriptor`` s; the config files list exactly these names
(a test checks), and :func:`settings_from` turns the values ROS hands over into the typed
object, so a wrong value is refused in one place with one line that names the parameter.

This module imports no ROS: the tables are read by tests, the launch files and the docs.
"""

from __future__ import annotations

import dataclasses
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Iterator, TypeVar

from ..errors import MoshifaceError

Scalar = bool | int | float | str
S = TypeVar("S")

TYPE_WORDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


class ParameterError(MoshifaceError):
    """A parameter with a value the node cannot use; the text names the parameter."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"parameter {name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class ParamSpec:
    """What one parameter is: its name, type, default and limits."""

    name: str
    kind: type
    default: Scalar
    description: str
    low: float | None = None  # inclusive range of a number parameter
    high: float | None = None
    read_only: bool = True  # a change needs a restart
    choices: tuple[str, ...] = ()  # the words a text parameter may take

    @property
    def constraints(self) -> str:
        """The limits in words (``ros2 param describe`` shows them)."""
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(repr(c) for c in self.choices))
        if self.low is not None:
            parts.append(f"from {self.low:g} to {self.high:g}")
        parts.append("read-only: restart the node to change it" if self.read_only else "may change at run time")
        return "; ".join(parts)


def param(default: Scalar, description: str, *, low: float | None = None, high: float | None = None,
          dynamic: bool = False, choices: tuple[str, ...] = ()) -> Any:
    """A settings field that is also a described ROS parameter (``dynamic``: it may be set
    while the node runs and takes effect at once; otherwise it is read-only)."""
    if (low is None) != (high is None):
        raise ValueError("give both ends of a range, or neither")
    meta = {"description": description, "low": low, "high": high, "read_only": not dynamic,
            "choices": tuple(choices)}
    return field(default=default, metadata={"parameter": meta})


def table(settings: type) -> list[ParamSpec]:
    """The parameters of a settings class, in declaration order."""
    specs = []
    for item in fields(settings):
        meta = item.metadata["parameter"]
        specs.append(ParamSpec(item.name, type(item.default), item.default, **meta))
    return specs


def defaults(settings: type) -> dict[str, Scalar]:
    """name -> default value (what the node's config file lists)."""
    return {spec.name: spec.default for spec in table(settings)}


def coerce(spec: ParamSpec, value: Any) -> Scalar:
    """``value`` as the parameter's type: an integer is accepted for a number (a params
    file's ``300`` for ``300.0``) and a number for text (``-p source:=0``, which ROS reads
    as an integer); anything else of the wrong type or out of range is a
    :class:`ParameterError`."""
    if spec.kind is float and type(value) is int:
        value = float(value)
    if spec.kind is str and type(value) in (int, float):  # "-p source:=0", "-p latency:=0.05"
        value = str(value)
    if type(value) is not spec.kind:
        raise ParameterError(spec.name, f"expected {TYPE_WORDS[spec.kind]}, got {_describe(value)}")
    if spec.kind is float and not math.isfinite(value):
        raise ParameterError(spec.name, f"must be a finite number, got {value}")
    if spec.low is not None and not spec.low <= value <= spec.high:
        raise ParameterError(spec.name, f"must lie between {spec.low:g} and {spec.high:g}, got {value:g}")
    if spec.choices and value not in spec.choices:
        words = ", ".join(repr(c) for c in spec.choices)
        raise ParameterError(spec.name, f"must be one of {words}, got {value!r}")
    return value


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"a list {list(value)!r}"
    return f"{TYPE_WORDS.get(type(value), type(value).__name__)} {value!r}"


def settings_from(settings: type[S], values: dict[str, Any]) -> S:
    """The typed settings for ``values`` (name -> value; missing names keep their
    defaults). Unknown names and bad values raise :class:`ParameterError`."""
    specs = {spec.name: spec for spec in table(settings)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ParameterError(unknown[0], f"is not a parameter of this node (it has: {', '.join(specs)})")
    typed = {name: coerce(specs[name], value) for name, value in values.items()}
    result = settings(**typed)
    check = getattr(result, "check", None)
    if check is not None:
        check()
    return result


def updated(current: S, values: dict[str, Any]) -> S:
    """``current`` with some parameters changed at run time (only non-read-only ones)."""
    specs = {spec.name: spec for spec in table(type(current))}
    for name in values:
        if name in specs and specs[name].read_only:
            raise ParameterError(name, "is read-only: restart the node to change it")
    merged = {**dataclasses.asdict(current), **values}
    return settings_from(type(current), merged)


@contextmanager
def about(name: str) -> Iterator[None]:
    """A user error raised inside is about parameter ``name``: re-raised as a
    :class:`ParameterError` naming it (a leading ``--name`` of a command-line message goes)."""
    try:
        yield
    except ParameterError:
        raise
    except MoshifaceError as exc:
        raise ParameterError(name, re.sub(rf"^--{name.replace('_', '-')}\b:?\s*", "", str(exc))) from None
