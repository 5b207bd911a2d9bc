"""Reading the package's YAML files (heads, regions, configs) safely, with one-line errors.

``yaml.safe_load`` refuses code, but not resource exhaustion: a 428-byte "billion laughs"
document (anchors referencing anchors) composes into a small graph of shared nodes that
any walk over it -- formatting a value for an error message, checking every entry --
expands into gigabytes. Deep nesting (``[[[[...``) ends in a ``RecursionError`` traceback.
This loader counts while it composes: the number of aliases, the size the document
would have with every alias expanded, and the nesting depth; past a budget the file is
refused with one line. Recursive anchors are refused too. No configuration we read needs
more than a handful of aliases, so the budgets are far above real files.

Parser errors keep their line and column: ``head.yaml: line 3, column 7: mapping values
are not allowed here``. ``describe`` formats a value for an error message with a bounded
amount of work, never expanding a shared structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import MoshifaceError

MAX_BYTES = 16 * 1024 * 1024  # a configuration file larger than this is not one
MAX_ALIASES = 100
MAX_EXPANDED_NODES = 1_000_000  # nodes of the document with every alias expanded
MAX_DEPTH = 64


class _BudgetError(yaml.YAMLError):
    """Raised inside the composer when a document exceeds a budget."""


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses alias-heavy, recursive or deeply nested documents."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> node count with aliases expanded

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _BudgetError(f"more than {MAX_ALIASES} aliases (refused: an alias bomb expands without bound)")
            anchor = self.peek_event().anchor
            node = self.anchors.get(anchor)
            if node is not None and id(node) not in self._sizes:
                raise _BudgetError(f"the alias *{anchor} refers to a node that contains it (a recursive structure)")
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _BudgetError(f"nesting deeper than {MAX_DEPTH} levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._expanded_size(node)
        return node

    def _expanded_size(self, node: Any) -> int:
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            return 1
        size = 1 + sum(self._sizes.get(id(child), 1) for child in children)
        if size > MAX_EXPANDED_NODES:
            raise _BudgetError(f"the document expands to more than {MAX_EXPANDED_NODES:,} nodes through its aliases")
        return size

    def compose_document(self) -> Any:  # type: ignore[override]
        node = super().compose_document()
        self._sizes = {}
        return node


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """One line for a parser error, keeping where it happened (line and column, 1-based)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        if mark is not None:
            return f"line {mark.line + 1}, column {mark.column + 1}: {problem}{context}"
        return f"{problem}{context}"
    return " ".join(str(exc).split())


def loads(text: str | bytes, source: str = "the YAML text") -> Any:
    """Parses one YAML document within the budgets; every problem is one MoshifaceError."""
    if len(text) > MAX_BYTES:
        raise MoshifaceError(f"{source} is {len(text):,} bytes, more than a configuration file can be "
                             f"({MAX_BYTES:,})")
    try:
        loader = BoundedLoader(text)
    except yaml.YAMLError as exc:  # the reader checks the encoding when it starts
        raise MoshifaceError(f"{source} is not valid YAML: {yaml_error_line(exc)}") from None
    try:
        return loader.get_single_data()
    except _BudgetError as exc:
        raise MoshifaceError(f"{source} is refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise MoshifaceError(f"{source} is not valid YAML: {yaml_error_line(exc)}") from None
    except (RecursionError, MemoryError, ValueError, OverflowError) as exc:
        raise MoshifaceError(f"{source} cannot be read as YAML ({type(exc).__name__})") from None
    finally:
        loader.dispose()


def load_file(path: Path | str, what: str = "file") -> Any:
    """Reads and parses a YAML file; a missing, unreadable, oversized or invalid file is one line."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise MoshifaceError(f"{path} is {size:,} bytes, more than a configuration file can be ({MAX_BYTES:,})")
        data = path.read_bytes()
    except FileNotFoundError:
        raise MoshifaceError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise MoshifaceError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    return loads(data, str(path))


class _Full(Exception):
    """The description reached its length limit."""


def describe(value: Any, limit: int = 80) -> str:
    """A short ``repr``-like text of ``value`` for an error message, built with bounded work:
    at most ``limit`` characters, so a shared (aliased) structure is never expanded."""
    out: list[str] = []
    left = [limit]

    def put(text: str) -> None:
        out.append(text)
        left[0] -= len(text)
        if left[0] <= 0:
            raise _Full

    def walk(item: Any, depth: int) -> None:
        if isinstance(item, (dict, list, tuple)) and depth >= 8:
            put("...")
        elif isinstance(item, dict):
            put("{")
            for i, (key, val) in enumerate(item.items()):
                put(", " if i else "")
                walk(key, depth + 1), put(": "), walk(val, depth + 1)
            put("}")
        elif isinstance(item, (list, tuple)):
            put("[")
            for i, val in enumerate(item):
                put(", " if i else "")
                walk(val, depth + 1)
            put("]")
        else:
            put(_scalar(item, limit))

    try:
        walk(value, 0)
    except _Full:
        return "".join(out)[:limit] + "..."
    return "".join(out)


def _scalar(item: Any, limit: int) -> str:
    if isinstance(item, int) and not isinstance(item, bool) and item.bit_length() > 64:
        return f"<a {item.bit_length()}-bit integer>"
    if isinstance(item, (str, bytes)) and len(item) > limit:
        return repr(item[:limit])
    return repr(item)
