"""``${env:…}`` and ``${file:PATH}`` references in spec strings.

The grammar, as in Compose but for the ``env:`` prefix:

- ``${env:NAME}``: NAME's value; an error when NAME is unset; empty when NAME is set but empty
  (as in a shell), and a field that cannot be empty then fails at load, naming NAME.
- ``${env:NAME:-default}``: the default when NAME is unset or empty (``${env:NAME:-}`` accepts
  an empty NAME on purpose); ``${env:NAME-default}``: only when NAME is unset.
- ``${env:NAME:+text}``: ``text`` when NAME is set and not empty, else empty;
  ``${env:NAME+text}``: ``text`` when NAME is set, even empty (``--flag=${env:DEBUG:+on}``).
- ``${env:NAME:?message}``: an error, with ``message`` as its hint, when NAME is unset or empty.
- ``${env:NAME?message}``: an error, with ``message`` as its hint, when NAME is unset.
- ``${file:PATH}``: the content of a regular file of at most 1 MiB (not a device or a pipe),
  relative to the spec's folder, without its final newlines.

Every substituted value counts as a secret for display: the caller gets the resolved text and
a display text in which each substitution reads ``(sensitive)``, and each ``Reference`` made
(``${env:NAME}``, how it resolved), so an error can say where a value came from without
repeating it. ``$${`` escapes a literal ``${``; a ``$`` not followed by ``{`` is itself.
References do not nest (``${env:A:-${env:B}}``) and must be closed: either is an error, never
literal text. A message, default or text ends at the first ``}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.spec.encoding import NotUtf8Error, UnfitFileError, read_source

if TYPE_CHECKING:  # load imports this module
    from collections.abc import Iterable

    from reconciler.spec.load import LoadedSpec

SENSITIVE = "(sensitive)"
_OPEN = re.compile(r"\$\$\{|\$\{")
_ENV = re.compile(r"^env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$", re.S)
_FILE = re.compile(r"^file:(?P<path>.+)$", re.S)


class Interpolated(str):
    """A value that interpolation made. Its type is known only once it is resolved, so a
    boolean or number field takes it as text (``enabled: "${env:S3_ENABLED:-false}"``), while
    one written in the file must be written as a boolean or number (``reconciler.spec.forms``)."""

    __slots__ = ()


class InterpolationError(ValueError):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class Outcome(Enum):
    """How a reference resolved: what an error about its value should send the operator to check."""

    SET = "set"  # the variable's value, or the file's content
    DEFAULT = "default"  # ``${env:NAME:-default}`` of an unset or empty NAME: the spec's default
    ALTERNATIVE = "alternative"  # ``${env:NAME:+text}`` of a set NAME: the spec's text
    EMPTY = "empty"  # a variable set but empty, or an empty file
    OMITTED = "omitted"  # ``${env:NAME:+text}`` of an unset or empty NAME: nothing


@dataclass(frozen=True)
class Reference:
    """One ``${…}`` of a value: how to name it in a message, what it reads, how it resolved.
    ``value`` is what it put in (a secret): never part of a message, only for masking one."""

    written: str  # ``${env:NAME}``, ``${env:NAME:-…}`` (the default is not repeated), ``${file:PATH}``
    outcome: Outcome
    env: str = ""  # the variable it reads
    file: Path | None = None  # or the file
    value: str = field(default="", repr=False)
    state: str = ""  # what NAME was that chose a DEFAULT, ALTERNATIVE or OMITTED: "unset", "set"…


@dataclass(frozen=True)
class Resolved:
    value: str = field(repr=False)
    display: str
    interpolated: bool
    references: tuple[Reference, ...] = ()


def interpolate(text: str, environ: Mapping[str, str], base_dir: Path) -> Resolved:
    """Resolve every reference in ``text``; raise ``InterpolationError`` naming what is missing."""
    parts: list[str] = []
    shown: list[str] = []
    references: list[Reference] = []
    pos = 0
    while match := _OPEN.search(text, pos):
        parts.append(text[pos:match.start()])
        shown.append(text[pos:match.start()])
        pos = match.end()
        if match.group(0) == "$${":
            parts.append("${")
            shown.append("${")
            continue
        body, pos = _body(text, match.start(), pos)
        reference = _resolve(body, environ, base_dir)
        parts.append(reference.value)
        shown.append(SENSITIVE)
        references.append(reference)
    parts.append(text[pos:])
    shown.append(text[pos:])
    return Resolved("".join(parts), "".join(shown), bool(references), tuple(references))


def _body(text: str, start: int, after: int) -> tuple[str, int]:
    """The body of the reference that opens at ``start``, and where the text goes on after it."""
    close = text.find("}", after)
    if close == -1:
        raise InterpolationError(
            f"unclosed reference: the ${{ at character {start + 1} of the value has no closing }}",
            "close it (${env:NAME}), or write $${ for a literal ${")
    body = text[after:close]
    if "${" in body:
        raise InterpolationError(
            f"nested reference: the ${{…}} at character {start + 1} of the value holds another ${{",
            "references do not nest: write a literal default (${env:A:-text}), or give A "
            "its value in the environment")
    return body, close + 1


def _resolve(body: str, environ: Mapping[str, str], base_dir: Path) -> Reference:
    if env := _ENV.match(body):
        return _resolve_env(env["name"], env["op"], env["arg"], environ)
    if file := _FILE.match(body):
        return _resolve_file(file["path"].strip(), base_dir)
    raise InterpolationError(
        f"unknown reference ${{{body.split(':', 1)[0]}:…}}",
        "use ${env:NAME}, ${env:NAME:-default}, ${env:NAME:+text}, ${env:NAME:?message} or "
        "${file:PATH}; write $${ for a literal ${")


def _resolve_env(name: str, op: str | None, arg: str | None, environ: Mapping[str, str]) -> Reference:
    written = f"${{env:{name}{op or ''}{'…' if arg else ''}}}"
    value = environ.get(name)
    # the colon forms treat an empty NAME as unset, as in a shell
    counts = value is not None and (bool(value) or not (op or "").startswith(":"))
    state = "is not set" if value is None else "is set but empty"
    if op in (":+", "+"):
        if counts:
            return Reference(written, Outcome.ALTERNATIVE, env=name, value=arg or "", state=_state(op, True))
        return Reference(written, Outcome.OMITTED, env=name, state=_state(op, False))
    if counts:
        return Reference(written, Outcome.SET if value else Outcome.EMPTY, env=name, value=value or "")
    if op in (":-", "-"):
        return Reference(written, Outcome.DEFAULT, env=name, value=arg or "", state=_state(op, False))
    if op is None:
        raise InterpolationError(
            f"environment variable {name} {state}",
            f"export {name}=… before running, or write ${{env:{name}:-default}} in the spec")
    # ``${env:NAME:?message}`` or ``${env:NAME?message}``: the operator's own message is the hint
    raise InterpolationError(f"environment variable {name} {state} (${{env:{name}{op}…}} requires it)",
                             (arg or "").strip() or f"export {name}=… (not empty) before running")


def _state(op: str, counts: bool) -> str:
    """What the variable was, in the terms of ``op``: why the default or the text was chosen."""
    if counts:
        return "is set and not empty" if op.startswith(":") else "is set"
    return "is unset or empty" if op.startswith(":") else "is unset"


def _resolve_file(written: str, base_dir: Path) -> Reference:
    path = (base_dir / written).resolve()
    try:
        value = read_source(path).rstrip("\n")
    except (NotUtf8Error, UnfitFileError) as exc:
        raise InterpolationError(exc.describe(f"the ${{file:…}} source {path}"), exc.hint) from None
    except OSError as exc:
        raise InterpolationError(
            f"cannot read {path} for ${{file:…}}: {exc.strerror}",
            "the path is relative to the spec file's folder; check it exists and is readable"
        ) from None
    return Reference(f"${{file:{written}}}", Outcome.SET if value else Outcome.EMPTY, file=path, value=value)


def read_env_file(path: Path) -> dict[str, str]:
    """A Compose-style env file: ``KEY=value`` lines, ``#`` comments, optional quotes.

    Raises ``OSError`` when it cannot be read, ``NotUtf8Error`` when it is not UTF-8 and
    ``UnfitFileError`` when it is not a regular file of at most 1 MiB."""
    values: dict[str, str] = {}
    for raw in read_source(path).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


# -- what interpolation put in: the secrets of a loaded spec --------------------------------------

def interpolated_values(loaded: LoadedSpec, skip: Iterable[tuple] = ()) -> list[str]:
    """The substituted parts of each interpolated spec value (but those at ``skip``), found by
    matching the display text (``postgresql://app:(sensitive)@db``) against the resolved value."""
    out = []
    skipped = set(skip)
    for path, shown in loaded.display.items():
        if path in skipped:
            continue
        value = value_at(loaded.spec, path)
        if value is None:
            continue
        out.extend(substituted(shown, value))
    return out


def substituted(shown: str, value: str) -> list[str]:
    """The parts of ``value`` its display text ``shown`` hides (each ``(sensitive)``)."""
    literal = shown.split(SENSITIVE)
    pattern = "(.*?)".join(re.escape(part) for part in literal)
    match = re.fullmatch(pattern, value, re.S)
    if match is None:
        return [value]  # the value was reshaped by parsing: mask it whole
    return [g for g in match.groups() if g]


def value_at(node: object, path: tuple) -> str | None:
    """The resolved value at a display path of the spec (secrets revealed), or None."""
    for part in path:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = getattr(node, str(part), None)
        if node is None:
            return None
    secret = getattr(node, "get_secret_value", None)
    return secret() if callable(secret) else str(node)
