"""Read a spec file: YAML with positions (ruamel), interpolation, pydantic, cross-checks.

Every problem becomes a ``SpecError`` with ``file:line:col``, the field path and a hint.
All problems of a file are reported together so an operator fixes them in one pass.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLFutureWarning, YAMLWarning
from ruamel.yaml.reader import ReaderError

from reconciler.errors import Location, SpecError, SpecErrors
from reconciler.spec.encoding import NotUtf8Error, UnfitFileError, read_utf8
from reconciler.spec.forms import FROM_FILE
from reconciler.spec.interpolate import (
    Interpolated,
    InterpolationError,
    Resolved,
    interpolate,
    read_env_file,
    substituted,
    value_at,
)
from reconciler.spec.models import Spec
from reconciler.spec.provenance import empty_fields, name_sources
from reconciler.spec.yamlread import ShapeError, Written, check_shape, yaml_reader

PathKey = tuple[str | int, ...]
_DUPLICATE_KEY = re.compile(r'found duplicate key "(?P<key>.*?)" with value', re.DOTALL)
_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.DOTALL)
_SAFE_QUOTED = re.compile(r"'<[a-z ]+>'|'\\?.'|\"\\?.\"")


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec and what the loader learnt on the way (positions, secret fields)."""

    spec: Spec
    file: Path
    positions: Mapping[PathKey, tuple[int, int]] = field(default_factory=dict)
    display: Mapping[PathKey, str] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.file.parent

    def shown(self, path: PathKey, value: object) -> str:
        """How a spec value may be displayed: interpolated parts read ``(sensitive)``."""
        return self.display.get(path, str(value))

    def state_dir(self) -> Path:
        return (self.base_dir / self.spec.state_dir).resolve()


class _Positions:
    def __init__(self, file: Path) -> None:
        self.file = file
        self.at: dict[PathKey, tuple[int, int]] = {}
        self.value_at: dict[PathKey, tuple[int, int]] = {}

    def record(self, node: CommentedMap, key: object, path: PathKey) -> None:
        """The key's place and its value's; a key merged in by ``<<`` has none of its own, and
        a null value's place is that of whatever follows it, so only its key's is kept."""
        place = _place(node.lc.key, key)
        if place is not None:
            self.at[path] = place
        value = _place(node.lc.value, key)
        if value is not None and node.get(key) is not None:
            self.value_at[path] = value

    def location(self, path: PathKey, *, value: bool = False) -> Location:
        """The key's place, or with ``value`` the scalar value's place when known."""
        if value and path in self.value_at:
            line, col = self.value_at[path]
            return Location(str(self.file), line, col, _dotted(path))
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.at:
                line, col = self.at[path[:cut]]
                return Location(str(self.file), line, col, _dotted(path))
        return Location(str(self.file), path=_dotted(path))


def _place(lookup: typing.Callable[[object], object], key: object) -> tuple[int, int] | None:
    try:
        line, col = lookup(key)  # type: ignore[misc]
    except (KeyError, TypeError):
        return None
    return line + 1, col + 1


def _dotted(path: PathKey) -> str:
    text = ""
    for part in path:
        if isinstance(part, str) and not part.isprintable():  # a key with a NUL or a newline
            part = part.encode("unicode_escape").decode("ascii")
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_spec(file: Path | str, environ: Mapping[str, str] | None = None) -> LoadedSpec:
    """Load, interpolate, validate and cross-check a spec; raise ``SpecErrors`` on any problem.

    A valid spec is read with the C parser, which keeps no positions; only when something is
    wrong is the file read again with ruamel's round-trip parser, so that every error can name
    its line and column. Plan stays fast and errors stay precise.
    """
    path = Path(file)
    environ = os.environ if environ is None else environ
    text = _read_text(path)
    _check_shape(path, text)
    try:
        return _load(path, _parse(path, text, fast=True), environ)
    except SpecErrors:
        pass
    return _load(path, _parse(path, text, fast=False), environ)


def _load(path: Path, raw: object, environ: Mapping[str, str]) -> LoadedSpec:
    positions = _Positions(path)
    errors: list[SpecError] = []
    resolved: dict[PathKey, Resolved] = {}
    data = _plain(raw, (), positions, environ, path.parent.resolve(), resolved, errors)
    if not isinstance(data, dict):
        found = "the spec file is empty" if data is None else f"the spec file holds {_kind(data)}"
        raise SpecError(f"{found}: a spec is a mapping (version, project, services…) at the top level",
                        location=Location(str(path), 1, 1),
                        hint="start from specs/healthcare.yaml", ref="spec.shape")
    _merge_env_files(data, path.parent.resolve(), positions, errors)
    spec = None
    if not errors:
        try:
            spec = Spec.model_validate(data, context=FROM_FILE)
        except ValidationError as exc:
            errors.extend(_from_validation(exc, positions))
    if spec is not None:
        from reconciler.spec.checks import cross_check

        errors.extend(cross_check(spec, positions.location))
    errors = name_sources(errors, resolved, _dotted)
    errors.extend(empty_fields(resolved, spec is not None and spec.backup.s3.enabled,
                               lambda at: positions.location(at, value=True)))
    if errors:
        raise SpecErrors(errors)
    display = {at: found.display for at, found in resolved.items()}
    return LoadedSpec(spec, path.resolve(), dict(positions.at), _published(display, spec))


def _kind(data: object) -> str:
    return "a list" if isinstance(data, list) else "a number or flag" if isinstance(data, (int, float)) else "text"


def _read_text(path: Path) -> str:
    try:
        return read_utf8(path)
    except NotUtf8Error as exc:
        raise SpecError(exc.describe("the spec file"), location=Location(str(path), exc.line, exc.col),
                        ref="spec.encoding", hint=exc.hint) from None
    except FileNotFoundError:
        named = os.environ.get("RECONCILE_FILE")
        if named and not Path(named).is_absolute() and Path(named) == path:
            raise SpecError(f"spec file {path} (from RECONCILE_FILE) not found in {Path.cwd()}",
                            ref="spec.missing",
                            hint="RECONCILE_FILE is read from the folder you are in: give it an absolute path"
                            ) from None
        raise SpecError(f"spec file {path} not found", ref="spec.missing",
                        hint="pass reconcile -f FILE, set RECONCILE_FILE, or create reconcile.yaml "
                             "(see specs/healthcare.yaml)") from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror}", ref="spec.unreadable",
                        hint="check the file's permissions") from None


def _check_shape(path: Path, text: str) -> None:
    try:
        check_shape(text)
    except ShapeError as exc:
        raise SpecError(str(exc), hint=exc.hint, ref="spec.yaml",
                        location=Location(str(path), exc.line, exc.col, _dotted(exc.path))) from None


def _parse(path: Path, text: str, fast: bool) -> object:
    """Plain data from the C parser (fast), or ruamel nodes that carry their positions."""
    try:
        with warnings.catch_warnings():  # ruamel's warnings quote the document's lines
            warnings.simplefilter("ignore", YAMLWarning)
            warnings.simplefilter("ignore", YAMLFutureWarning)
            return yaml_reader(fast).load(text)
    except RecursionError:  # check_shape bounds the nesting; this is the last line of defence
        raise SpecError("invalid YAML: lists and mappings nest too deeply", location=Location(str(path)),
                        ref="spec.yaml", hint="a spec needs a few levels; check for unbalanced [ or {") from None
    except ReaderError as exc:  # a control character, such as the NULs of a UTF-16 file without a BOM
        raise _unreadable_character(path, text, exc) from None
    except MarkedYAMLError as exc:
        if fast:
            return _parse(path, text, fast=False)
        mark = exc.problem_mark or exc.context_mark
        where = Location(str(path), mark.line + 1, mark.column + 1) if mark else Location(str(path))
        message, hint = _yaml_problem(exc)
        raise SpecError(f"invalid YAML: {message}", location=where, ref="spec.yaml", hint=hint) from None


def _unreadable_character(path: Path, text: str, exc: ReaderError) -> SpecError:
    position = min(max(exc.position, 0), len(text))
    line = text.count("\n", 0, position) + 1
    col = position - (text.rfind("\n", 0, position) + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
    hint = ("a NUL character: the file may be UTF-16 or not text at all; save it as UTF-8"
            if code == 0 else f"remove it (an editor may show it as ^{chr(code + 64)}, or not at all)" if code < 32
            else "remove it (an editor may not show it at all)")
    return SpecError(f"invalid YAML: character U+{code:04X} (a control or special character) is not allowed",
                     location=Location(str(path), line, col), ref="spec.yaml", hint=hint)


def _yaml_problem(exc: MarkedYAMLError) -> tuple[str, str]:
    """The parser's problem without the document's text: ruamel quotes values (a duplicate
    key's two values, an undefined alias's name) and they may be secrets. A quoted part is
    kept only when it is a token name (``'<scalar>'``) or one character (``'\\t'``)."""
    problem = exc.problem or exc.context or ""
    duplicate = _DUPLICATE_KEY.match(problem)
    if duplicate:
        key = duplicate["key"]
        named = f" {key!r}" if _SAFE_KEY.fullmatch(key) else ""
        return (f"duplicate key{named} in a mapping",
                "a key may appear only once in a mapping: remove or rename one of them")
    hint = ("indent with spaces: YAML does not take a tab for indentation" if "'\\t'" in problem
            else "check indentation and quoting near this line")
    if not problem or any(quote in _QUOTED.sub("", problem) for quote in "'\""):
        return "the file is not well-formed YAML", hint  # a quote we cannot pair: say nothing
    return _QUOTED.sub(lambda m: m[0] if _SAFE_QUOTED.fullmatch(m[0]) else "…", problem), hint


def _plain(node: object, path: PathKey, positions: _Positions, environ: Mapping[str, str],
           base: Path, display: dict[PathKey, Resolved], errors: list[SpecError]) -> object:
    """Plain Python data with references resolved; ruamel nodes also give their positions.

    A key is the text it was written as; so is an ``env`` value that YAML reads as a number,
    boolean or date (``PIN: 0123456`` stays ``0123456``): the container gets what the file says.
    A date is text everywhere: no field takes a date, and editors (YAML 1.2) read one as text."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            name = key.text if isinstance(key, Written) else str(key)
            if isinstance(node, CommentedMap):
                positions.record(node, key, (*path, name))
            if name in out:  # two keys YAML tells apart (1 and '1') that are one name here: none is dropped
                errors.append(SpecError(
                    "duplicate key" + (f" {name!r}" if _SAFE_KEY.fullmatch(name) else "") + " in a mapping",
                    location=positions.location((*path, name)), ref="spec.yaml",
                    hint="a key may appear only once in a mapping, however it is written (1 and '1' are one "
                         "key): remove or rename one of them"))
            out[name] = _plain(value, (*path, name), positions, environ, base, display, errors)
        return out
    if isinstance(node, list):
        out_list = []
        for index, value in enumerate(node):
            if isinstance(node, CommentedSeq) and (place := _place(node.lc.item, index)):
                positions.at[(*path, index)] = place
            out_list.append(_plain(value, (*path, index), positions, environ, base, display, errors))
        return out_list
    if isinstance(node, str):
        return _resolve(node, path, positions, environ, base, display, errors)
    if isinstance(node, Written):
        return node.text if _is_env_value(path) or isinstance(node.value, date) else node.value
    return node


def _is_env_value(path: PathKey) -> bool:
    return len(path) == 4 and path[0] == "services" and path[2] == "env"


def _resolve(text: str, path: PathKey, positions: _Positions, environ: Mapping[str, str],
             base: Path, display: dict[PathKey, Resolved], errors: list[SpecError]) -> str:
    """The text resolved; ``display`` keeps how an interpolated one may be shown, and its sources."""
    try:
        resolved = interpolate(text, environ, base)
    except InterpolationError as exc:
        errors.append(SpecError(str(exc), hint=exc.hint, location=positions.location(path, value=True),
                                ref="spec.interpolation"))
        return text
    if resolved.interpolated:
        display[path] = resolved
        return Interpolated(resolved.value)
    return resolved.value


def _public(path: PathKey) -> bool:
    """An interpolated value shown as it resolves, not as ``(sensitive)``: an image reference
    (Docker's grammar has no place for a credential, and a plan must say which version it
    deploys: ``app:${env:GIT_SHA}``) and a published port (an address and port numbers)."""
    if len(path) < 3 or path[0] != "services":
        return False
    return path[2] in ("image", "ports") or tuple(path[2:4]) == ("deploy", "proxy_image")


def _published(display: dict[PathKey, str], spec: Spec) -> dict[PathKey, str]:
    """``display`` without the public values (``_public``), which are shown as they resolve;
    unless what was substituted into one is, holds or is part of an ``env`` value of the spec
    (``app:${env:DB_PASSWORD}``): a secret stays hidden wherever it is used."""
    secrets = {v.get_secret_value() for s in spec.services.values() for v in s.env.values()}
    secrets = {secret for secret in secrets if len(secret) >= 4}
    kept = {}
    for path, shown in display.items():
        value = value_at(spec, path) if _public(path) else None
        if value is not None and not any(part in secret or secret in part for part in substituted(shown, value)
                                         if len(part) >= 4 for secret in secrets):
            continue
        kept[path] = shown
    return kept


def _merge_env_files(data: dict, base: Path, positions: _Positions, errors: list[SpecError]) -> None:
    """Fold each service's ``env_file`` under its ``env`` (explicit ``env`` wins)."""
    services = data.get("services")
    if not isinstance(services, dict):
        return
    for name, service in services.items():
        if not isinstance(service, dict) or not isinstance(service.get("env_file"), str):
            continue
        if not isinstance(service.get("env", {}), dict):  # left for validation to refuse, not dropped
            continue
        env_path = (base / service["env_file"]).resolve()
        try:
            from_file = read_env_file(env_path)
        except NotUtf8Error as exc:
            errors.append(SpecError(exc.describe(f"env_file {env_path}"), ref="spec.encoding", hint=exc.hint,
                                    location=positions.location(("services", name, "env_file"), value=True)))
            continue
        except UnfitFileError as exc:
            errors.append(SpecError(exc.describe(f"env_file {env_path}"), ref="spec.env-file", hint=exc.hint,
                                    location=positions.location(("services", name, "env_file"), value=True)))
            continue
        except OSError as exc:
            errors.append(SpecError(
                f"cannot read env_file {env_path}: {exc.strerror}", ref="spec.env-file",
                location=positions.location(("services", name, "env_file")),
                hint="the path is relative to the spec file's folder; create it with mode 0600"))
            continue
        env = service.get("env") if isinstance(service.get("env"), dict) else {}
        service["env"] = {**from_file, **env}


def _from_validation(exc: ValidationError, positions: _Positions) -> list[SpecError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc: PathKey = tuple(p for p in err["loc"] if not _is_validator_tag(p))
        where = positions.location(loc)
        if err["type"] == "extra_forbidden":
            errors.append(SpecError(f"unknown key {loc[-1]!r}", location=where, ref="spec.unknown-key",
                                    hint=_did_you_mean(str(loc[-1]), _fields_at(Spec, loc[:-1]))))
        elif err["type"] == "missing":
            errors.append(SpecError(f"missing required key {loc[-1]!r}", location=where,
                                    ref="spec.missing-key", hint="add it; see specs/healthcare.yaml"))
        else:
            message = err["msg"].removeprefix("Value error, ")
            errors.append(SpecError(f"invalid value: {message}", ref="spec.invalid",
                                    location=positions.location(loc, value=err["loc"][-1] != "[key]"),
                                    hint=err.get("ctx", {}).get("hint") or _choice_hint(err) or _type_hint(loc)))
    return errors


def _choice_hint(err: Mapping) -> str:
    """For a value outside a fixed set (``restart: alway``, ``kind: postgresql``): the choice it is
    likely a typo of, and the choices. The input is compared, never shown; an interpolated one
    (which may be secret) is not even compared."""
    if err["type"] not in ("enum", "literal_error"):
        return ""
    choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
    written = err.get("input")
    if not choices:
        return ""
    close = (difflib.get_close_matches(written.lower(), choices, n=1, cutoff=0.6)
             if isinstance(written, str) and not isinstance(written, Interpolated) else [])
    listed = f"write one of: {', '.join(choices)}"
    return f"did you mean {close[0]!r}? ({listed})" if close else listed


def _is_validator_tag(part: object) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _type_hint(loc: PathKey) -> str:
    """The keys beside a wrong VALUE are not listed: they are no fix for it."""
    return f"see the JSON Schema (reconcile schema) for {_dotted(loc) or 'the top level'}"


_COMPOSE_KEYS = {"environment": "env"}  # a Compose key too far from ours for difflib to find it


def _did_you_mean(key: str, allowed: set[str]) -> str:
    if key.startswith("x-"):
        return ("Compose's extension keys (x-…) are not taken: put the anchor (&name) on a service and merge "
                "it into the others (<<: *name)")
    close = [_COMPOSE_KEYS[key]] if _COMPOSE_KEYS.get(key) in allowed else \
        difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"allowed keys here: {', '.join(sorted(allowed))}" if allowed else "remove this key"


def _fields_at(model: type[BaseModel], loc: PathKey) -> set[str]:
    """The field names a model allows at ``loc`` (for "did you mean")."""
    current: object = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return set()
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return set(current.model_fields)
    return set()


def _step(annotation: object, part: str | int) -> object:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(str(part))
        return info.annotation if info else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin is list and args:
        return args[0]
    return None


def _unwrap(annotation: object) -> object:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
