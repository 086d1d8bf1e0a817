"""Read a spec's YAML safely: what the file may hold is checked before anything is built.

YAML can do more than a spec needs, and each extra is a way to hurt the reader: a tag
(``!!python/object/apply:…``, ``!custom``) asks for an object the spec has no use for; deep
nesting overflows the parser's stack (a segfault in the C parser, a RecursionError in ruamel's);
aliases repeat their anchor's content, so a 1 KB "billion laughs" file expands to billions of
values. ``check_shape`` reads the parser's events (a flat stream, however deep the file) and
refuses all three with the place they start, before the file is loaded.

Plain scalars that YAML reads as numbers, booleans or dates are built as ``Written``: the
value and the text as written. ``PIN: 0123456`` is the int 123456 to YAML, but an ``env``
value must reach the container as the operator wrote it, so the loader takes the text there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor, SafeConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)

MAX_DEPTH = 32  # a spec needs about 6 levels (services.api.health.http.port)
MAX_VALUES = 100_000  # a spec of 500 services holds about 20 000 values, aliases expanded


class ShapeError(ValueError):
    """What the YAML holds that a spec may not, and where (1-based line and column, field path)."""

    def __init__(self, message: str, hint: str, line: int, col: int, path: tuple) -> None:
        super().__init__(message)
        self.hint, self.line, self.col, self.path = hint, line, col, path


@dataclass
class _Open:
    """A mapping or list being read: its place in its parent and what it holds so far."""

    mapping: bool
    anchor: str | None
    values: int = 1  # itself and everything in it, aliases expanded
    height: int = 1  # levels of mappings and lists, itself included
    key: str | int = ""  # the current key (mapping) or index (list)
    want_key: bool = True


def check_shape(text: str) -> None:
    """Raise ``ShapeError`` for a tag, nesting deeper than ``MAX_DEPTH`` or more than
    ``MAX_VALUES`` values once aliases are expanded (and for an alias inside its own anchor).

    A syntax error ends the check quietly: the loader reports it with its own position. The
    C parser reads the events; should it stop where ruamel's own parser would go on, that
    one reads them again, so nothing the loader accepts goes unchecked."""
    for pure in (False, True):
        try:
            _scan(YAML(typ="safe", pure=pure).parse(text))
            return
        except YAMLError:
            continue


def _scan(events: Any) -> None:
    scan = _Scan()
    for event in events:
        if isinstance(event, DocumentStartEvent) and event.version not in (None, (1, 2)):
            raise ShapeError(f"a %YAML {'.'.join(map(str, event.version))} directive is not supported",
                             "remove the %YAML line: a spec is read as YAML 1.2, as editors read it (YAML 1.1 "
                             "reads ports: [22:22] as port 1342 and yes as true)",
                             event.start_mark.line + 1, event.start_mark.column + 1, ())
        if isinstance(event, NodeEvent):
            scan.node(event)
        elif isinstance(event, CollectionEndEvent):
            scan.close()


class _Scan:
    """The open mappings and lists, the size and height of each finished anchor, the total."""

    def __init__(self) -> None:
        self.stack: list[_Open] = []
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor → (values, height)
        self.total = 0

    def node(self, event: NodeEvent) -> None:
        _advance(self.stack, event)
        if getattr(event, "tag", None) is not None:
            raise self.error(event, "a YAML tag (!name or !!name) is not supported",
                             "remove it: a spec holds only text, numbers, booleans, lists and mappings; "
                             "to keep a value as text, quote it ('0123')")
        if isinstance(event, AliasEvent):
            values, height = self.alias(event)
        else:
            values, height = 1, 0
        if isinstance(event, CollectionStartEvent):
            if len(self.stack) >= MAX_DEPTH:
                raise self.too_deep(event)
            self.stack.append(_Open(isinstance(event, MappingStartEvent), event.anchor))
        else:
            self.add(values, height)
            if event.anchor and isinstance(event, ScalarEvent):
                self.anchors[event.anchor] = (1, 0)
        self.total += values
        if self.total > MAX_VALUES:
            raise self.error(event, f"the spec holds more than {MAX_VALUES} values once its aliases "
                                    "are expanded",
                             "an alias (*name) repeats all its anchor (&name) holds: repeat small parts, "
                             "not aliases of aliases")

    def alias(self, event: AliasEvent) -> tuple[int, int]:
        if any(open_.anchor == event.anchor for open_ in self.stack):
            raise self.error(event, "an alias refers to a mapping or list it is inside (a loop)",
                             "an alias (*name) may only repeat a node that ends before it")
        values, height = self.anchors.get(event.anchor, (1, 0))  # undefined: the loader says so
        if len(self.stack) + height > MAX_DEPTH:
            raise self.too_deep(event)
        return values, height

    def close(self) -> None:
        done = self.stack.pop()
        if done.anchor:
            self.anchors[done.anchor] = (done.values, done.height)
        self.add(done.values, done.height)

    def add(self, values: int, height: int) -> None:
        if self.stack:
            self.stack[-1].values += values
            self.stack[-1].height = max(self.stack[-1].height, height + 1)

    def too_deep(self, event: NodeEvent) -> ShapeError:
        return self.error(event, f"lists and mappings nest more than {MAX_DEPTH} levels deep",
                          "a spec needs a few levels (services.api.health.http.port is five); "
                          "check for unbalanced [ or {")

    def error(self, event: NodeEvent, message: str, hint: str) -> ShapeError:
        mark = event.start_mark
        path = tuple(open_.key for open_ in self.stack)
        return ShapeError(message, hint, mark.line + 1, mark.column + 1, path)


def _advance(stack: list[_Open], event: NodeEvent) -> None:
    """Move the innermost open node on to the key, value or item that ``event`` starts."""
    if not stack:
        return
    top = stack[-1]
    if not top.mapping:
        top.key = (top.key + 1) if isinstance(top.key, int) else 0
    elif top.want_key:
        top.key = str(event.value) if isinstance(event, ScalarEvent) else "?"
        top.want_key = False
    else:
        top.want_key = True


# -- building: scalars that remember their text, no tags --------------------------------------------

class Written:
    """A plain scalar that YAML reads as a number, boolean or date, and the text it was written as
    (for a plain scalar, the node's value is exactly that text). Equal and hashed as its value,
    so it behaves as one when it is a mapping key."""

    __slots__ = ("value", "text")

    def __init__(self, value: object, text: str) -> None:
        self.value, self.text = value, text

    def __eq__(self, other: object) -> bool:
        return self.value == (other.value if isinstance(other, Written) else other)

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Written({self.value!r}, {self.text!r})"


def _written(build: Any) -> Any:
    def construct(self: SafeConstructor, node: Any) -> Written:
        try:
            return Written(build(self, node), node.value)
        except (ValueError, OverflowError):  # 2024-02-30, or an int of more than 4300 digits
            raise ConstructorError(None, None, "a value that looks like a number or date but is not one "
                                               "(quote it to keep it as text)", node.start_mark) from None
    return construct


def _refuse_tag(self: SafeConstructor, node: Any) -> None:
    """Never reached after ``check_shape``; kept so that no tag can ever build an object."""
    raise ConstructorError(None, None, "a YAML tag is not supported", node.start_mark)


def _reading(base: type) -> type:
    """``base`` with numbers, booleans and dates built as ``Written`` and every other tag refused."""
    reader = type(f"Spec{base.__name__}", (base,), {})
    reader.add_constructor(None, _refuse_tag)
    for tag in ("bool", "int", "float", "timestamp"):
        reader.add_constructor(f"tag:yaml.org,2002:{tag}",
                               _written(getattr(SafeConstructor, f"construct_yaml_{tag}")))
    return reader


_FAST, _ROUND_TRIP = _reading(SafeConstructor), _reading(RoundTripConstructor)


def yaml_reader(fast: bool) -> YAML:
    """The C parser building plain data (fast), or ruamel's round-trip one keeping positions."""
    yaml = YAML(typ="safe", pure=False) if fast else YAML(typ="rt")
    yaml.Constructor = _FAST if fast else _ROUND_TRIP
    return yaml
