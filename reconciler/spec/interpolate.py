"""``${env:NAME}``, ``${env:NAME:-default}`` and ``${file:PATH}`` in spec strings.

Every substituted value counts as a secret for display: the caller gets the resolved text and
a display text in which each substitution reads ``(sensitive)``. ``$${`` escapes a literal ``${``;
a ``$`` not followed by ``{`` is itself.

``${env:NAME:-default}`` takes the default when NAME is unset or empty, as the shell and
Compose do (``${env:NAME}`` of an empty NAME is empty). References do not nest
(``${env:A:-${env:B}}``) and must be closed: either is an error, never literal text.
``${file:PATH}`` reads a regular file of at most 1 MiB (not a device or a pipe).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.spec.encoding import NotUtf8Error, UnfitFileError, read_source

if TYPE_CHECKING:  # load imports this module
    from collections.abc import Iterable

    from reconciler.spec.load import LoadedSpec

SENSITIVE = "(sensitive)"
_OPEN = re.compile(r"\$\$\{|\$\{")
_ENV = re.compile(r"^env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?$", re.S)
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


@dataclass(frozen=True)
class Resolved:
    value: str
    display: str
    interpolated: bool


def interpolate(text: str, environ: Mapping[str, str], base_dir: Path) -> Resolved:
    """Resolve every reference in ``text``; raise ``InterpolationError`` naming what is missing."""
    parts: list[str] = []
    shown: list[str] = []
    found = False
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
        parts.append(_resolve(body, environ, base_dir))
        shown.append(SENSITIVE)
        found = True
    parts.append(text[pos:])
    shown.append(text[pos:])
    return Resolved("".join(parts), "".join(shown), found)


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


def _resolve(body: str, environ: Mapping[str, str], base_dir: Path) -> str:
    if env := _ENV.match(body):
        name, default = env["name"], env["default"]
        if environ.get(name) or (name in environ and default is None):
            return environ[name]
        if default is not None:
            return default
        raise InterpolationError(
            f"environment variable {name} is not set",
            f"export {name}=… before running, or write ${{env:{name}:-default}} in the spec")
    if file := _FILE.match(body):
        path = (base_dir / file["path"].strip()).resolve()
        try:
            return read_source(path).rstrip("\n")
        except (NotUtf8Error, UnfitFileError) as exc:
            raise InterpolationError(exc.describe(f"the ${{file:…}} source {path}"), exc.hint) from None
        except OSError as exc:
            raise InterpolationError(
                f"cannot read {path} for ${{file:…}}: {exc.strerror}",
                "the path is relative to the spec file's folder; check it exists and is readable"
            ) from None
    raise InterpolationError(
        f"unknown reference ${{{body.split(':', 1)[0]}:…}}",
        "use ${env:NAME}, ${env:NAME:-default} or ${file:PATH}; write $${ for a literal ${")


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
