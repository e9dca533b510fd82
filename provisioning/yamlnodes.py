"""Read YAML as PyYAML nodes, field by field, so every error can name its line.

`yaml.safe_load` loses line numbers and silently keeps the last of two
duplicate keys; composing nodes keeps both facts. Readers here raise
`SchemaError` (line, field, message); the caller adds the file and the
context (e.g. the board) when converting it to its own error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

T = TypeVar("T")
_MISSING: Any = object()

# Scalar kinds a field may ask for, with the words used in error messages.
_KIND_WORDS: dict[type, str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
}


class SchemaError(Exception):
    """A value in a YAML document that breaks the expected shape."""

    def __init__(self, line: int, field: str, message: str) -> None:
        super().__init__(f"{line}: {field}: {message}")
        self.line = line
        self.field = field
        self.message = message


class SyntaxProblem(Exception):
    """The text is not YAML at all; `line` is None when PyYAML gave no position."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def compose(text: str) -> yaml.Node | None:
    """Parse one YAML document into nodes (None for an empty document)."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        if e.context and e.problem:
            problem = f"{problem} ({e.context})"
        raise SyntaxProblem(mark.line + 1 if mark else None, f"YAML syntax: {problem}") from e
    except yaml.YAMLError as e:
        raise SyntaxProblem(None, f"YAML syntax: {e}") from e


def line_of(node: yaml.Node) -> int:
    """1-based line where a node starts."""
    return int(node.start_mark.line) + 1


def describe(value: Any) -> str:
    """A value as an error message shows it: its YAML kind and its text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"


def kind_of(node: yaml.Node) -> str:
    """What a node is, for messages: `a mapping`, `a list` or its scalar value."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return describe(scalar_value(node, ""))


def scalar_value(node: yaml.Node, field: str) -> Any:
    """The Python value of a scalar node, typed the way YAML 1.1 resolves it."""
    try:
        return SafeConstructor().construct_object(node, deep=True)
    except ConstructorError as e:
        raise SchemaError(line_of(node), field, e.problem or "cannot read value") from e


def scalar(node: yaml.Node, field: str, kind: type[T]) -> T:
    """A scalar of one kind; ints are accepted where numbers are asked for."""
    if not isinstance(node, yaml.ScalarNode):
        raise SchemaError(
            line_of(node), field, f"expected {_KIND_WORDS[kind]}, got {kind_of(node)}"
        )
    value = scalar_value(node, field)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # type: ignore[return-value]
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    hint = ""
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        hint = " (quote it to make it a string)"
    raise SchemaError(
        line_of(node), field, f"expected {_KIND_WORDS[kind]}, got {describe(value)}{hint}"
    )


def join(prefix: str, key: str) -> str:
    """Dotted field path: join('sensors[0]', 'pins') -> 'sensors[0].pins'."""
    return f"{prefix}.{key}" if prefix else key


class MapReader:
    """A mapping node read key by key; duplicate keys fail at once, unknown ones in `only`."""

    def __init__(self, node: yaml.Node | None, field: str, line: int) -> None:
        """`line` is where to point when the mapping is absent or a key is missing from it."""
        self.field = field
        self.line = line
        if node is None or not isinstance(node, yaml.MappingNode):
            got = "nothing" if node is None else kind_of(node)
            raise SchemaError(node_line(node, line), field, f"expected a mapping, got {got}")
        self._items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SchemaError(
                    line_of(key_node),
                    field,
                    "merge keys (<<) are not supported; write the fields out",
                )
            key = scalar_value(key_node, field) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                hint = " (quote it: YAML reads yes/no/on/off as booleans)" * isinstance(key, bool)
                raise SchemaError(
                    line_of(key_node),
                    field,
                    f"keys must be strings, got {kind_of(key_node)}{hint}",
                )
            if key in self._items:
                first = line_of(self._items[key][0])
                raise SchemaError(
                    line_of(key_node), join(field, key), f"duplicate key (first on line {first})"
                )
            self._items[key] = (key_node, value_node)

    def only(self, allowed: Iterable[str]) -> MapReader:
        """Fail on the first key not in `allowed`: a typo must not pass silently."""
        allowed = list(allowed)
        for key, (key_node, _) in self._items.items():
            if key not in allowed:
                raise SchemaError(
                    line_of(key_node),
                    self.field_of(key),
                    f"unknown field (expected one of: {', '.join(allowed)})",
                )
        return self

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        """Every key, in document order (for free-form mappings such as `pins`)."""
        return list(self._items)

    def field_of(self, key: str) -> str:
        return join(self.field, key)

    def key_line(self, key: str) -> int:
        return line_of(self._items[key][0])

    def value_line(self, key: str) -> int:
        return line_of(self._items[key][1])

    def node(self, key: str) -> yaml.Node:
        """The value node of a required key."""
        if key not in self._items:
            raise SchemaError(self.line, self.field_of(key), "required field is missing")
        return self._items[key][1]

    def get(self, key: str, kind: type[T], default: Any = _MISSING) -> T:
        """A scalar field; without a default it is required."""
        if key not in self._items:
            if default is _MISSING:
                raise SchemaError(self.line, self.field_of(key), "required field is missing")
            return default  # type: ignore[no-any-return]
        return scalar(self._items[key][1], self.field_of(key), kind)

    def choice(self, key: str, options: Iterable[str], default: Any = _MISSING) -> str:
        """A string field that must be one of `options`."""
        options = list(options)
        if key not in self._items and default is not _MISSING:
            return default  # type: ignore[no-any-return]
        node = self.node(key)
        value = (
            scalar_value(node, self.field_of(key)) if isinstance(node, yaml.ScalarNode) else None
        )
        if isinstance(value, str) and value in options:
            return value
        got = describe(value) if isinstance(node, yaml.ScalarNode) else kind_of(node)
        raise SchemaError(
            line_of(node), self.field_of(key), f"expected one of {', '.join(options)}, got {got}"
        )

    def map(self, key: str) -> MapReader:
        """A required nested mapping."""
        node = self.node(key)
        return MapReader(node, self.field_of(key), self.key_line(key))

    def optional_map(self, key: str) -> MapReader | None:
        return self.map(key) if key in self else None

    def seq(self, key: str) -> Iterator[tuple[str, yaml.Node]]:
        """Items of a required list, each with its field path (`sensors[2]`)."""
        node = self.node(key)
        if not isinstance(node, yaml.SequenceNode):
            raise SchemaError(
                line_of(node), self.field_of(key), f"expected a list, got {kind_of(node)}"
            )
        for i, item in enumerate(node.value):
            yield f"{self.field_of(key)}[{i}]", item


def node_line(node: yaml.Node | None, default: int) -> int:
    return default if node is None else line_of(node)
