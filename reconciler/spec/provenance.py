"""Where an interpolated spec value came from, said in its errors without repeating the value.

An error about ``ports: ["${env:API_PORT}:8000"]`` points at a line that looks right: the
operator must be sent to the environment (or the file) that gave the value. The value counts as
a secret, so it is never shown: a part of a message that repeats it is masked.

A variable set but empty gives an empty value (as in a shell). Where a field cannot be empty
(an image, a port, a database password, the user to run as…), it fails at load naming the
variable, not later as a container that will not start, or one that runs as root.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from reconciler.errors import Location, SpecError
from reconciler.spec.interpolate import SENSITIVE, Outcome, Reference, Resolved

PathKey = tuple[str | int, ...]
# env values that are never right empty: a server refuses to start, or starts without a password
SECRET_ENV = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|REQUIREPASS|SECRET|TOKEN|CREDENTIAL"
                        r"|(?:API|ACCESS|PRIVATE|MASTER|ENCRYPTION|SIGNING)_?KEY", re.IGNORECASE)
_MIN_MASKED = 3  # a shorter value would mask ordinary words of a message, and tells little


def name_sources(errors: list[SpecError], resolved: Mapping[PathKey, Resolved],
                 dotted: Callable[[PathKey], str]) -> list[SpecError]:
    """``errors``, each one about an interpolated value (``resolved``) naming its references,
    with that value masked. ``dotted`` gives a path as errors' locations write it."""
    if not errors or not resolved:
        return errors
    by_text = {dotted(path): path for path in resolved}
    named = []
    for error in errors:
        path = _source(error, by_text)
        named.append(error if path is None else _named(error, _leaf(path), resolved[path]))
    return named


def empty_fields(resolved: Mapping[PathKey, Resolved], s3_enabled: bool,
                 locate: Callable[[PathKey], Location]) -> list[SpecError]:
    """Fields that validation takes empty but that are never right so, left empty by a
    variable set but empty (or an empty file). ``${env:NAME:-}`` asks for an empty value."""
    errors = []
    for path, found in resolved.items():
        empty = _empty(found)
        if empty and _never_empty(path, s3_enabled):
            on_purpose = " or ".join(f"${{env:{ref.env}:-}}" for ref in empty if ref.env)
            hint = _fill(empty) + (f"; to accept an empty value on purpose, write {on_purpose}" if on_purpose else "")
            errors.append(SpecError(f"{_leaf(path)} is empty: {_why_empty(empty)}", ref="spec.empty-value",
                                    location=locate(path), hint=hint))
    return errors


def _never_empty(path: PathKey, s3_enabled: bool) -> bool:
    match path:
        case ("state_dir",) | ("backup", "local", "path") | ("services", str(), "user"):
            return True
        case ("services", str(), "env", str() as name):
            return bool(SECRET_ENV.search(name))
        case ("backup", "s3", "region"):  # (an empty endpoint is AWS's: S3Store takes it as none)
            return s3_enabled
    return False


def _source(error: SpecError, by_text: Mapping[str, PathKey]) -> PathKey | None:
    """The path of the interpolated value the error is about: its own, or the nearest above it
    (``ports[0]`` for an error in ``ports[0].container``)."""
    path = error.location.path if error.location else ""
    above = [text for text in by_text if path == text or path.startswith((f"{text}.", f"{text}["))]
    return by_text[max(above, key=len)] if above else None


def _named(error: SpecError, leaf: str, found: Resolved) -> SpecError:
    message, hint = _masked(error.message, found), _masked(error.hint, found)
    if hint != error.hint:  # it offered something like the value ("did you mean …?"): no help now
        hint = ""
    ref = error.ref
    if empty := _empty(found):
        why = _why_empty(empty)
        if ref == "spec.invalid":  # the form it failed is beside the point: it is empty
            message, hint, ref = f"{leaf} is empty: {why}", _fill(empty), "spec.empty-value"
        else:
            message, hint = f"{message} ({why})", "; ".join(filter(None, (_fill(empty), hint)))
    else:
        refs = " and ".join(_described(r) for r in found.references)
        hidden = any(_hidden(r) for r in found.references)
        message = f"{message} (the value comes from {refs}{'; it is not shown' if hidden else ''})"
        hint = f"{_check(found.references)}; {hint}" if hint else _check(found.references)
    return SpecError(message, hint=hint, location=error.location, ref=ref)


def _empty(found: Resolved) -> list[Reference]:
    """The references that left the whole value empty, if it is."""
    if found.value.strip():
        return []
    return [ref for ref in found.references if ref.outcome in (Outcome.EMPTY, Outcome.OMITTED)]


def _hidden(ref: Reference) -> bool:
    """Whether the reference put a value in that a message must not show (any, but nothing)."""
    return ref.outcome not in (Outcome.EMPTY, Outcome.OMITTED)


def _why_empty(refs: list[Reference]) -> str:
    return "; ".join(_why_one_empty(r) for r in refs)


def _why_one_empty(ref: Reference) -> str:
    if ref.outcome is Outcome.OMITTED:
        return f"{ref.written} is empty because {ref.env} {ref.state}"
    return f"{ref.written} is set but empty" if ref.env else f"{ref.written} is an empty file"


def _fill(refs: list[Reference]) -> str:
    return "; ".join(_fill_one(r) for r in refs)


def _fill_one(ref: Reference) -> str:
    if ref.outcome is Outcome.OMITTED:
        return f"set {ref.env} before running, or write the value without {ref.written}"
    if ref.env:
        return (f"give {ref.env} a value before running (or write ${{env:{ref.env}:?message}} to stop with "
                f"your message when it is unset or empty)")
    return f"write the value into {ref.file}"


def _described(ref: Reference) -> str:
    if ref.outcome is Outcome.DEFAULT:
        return f"the default of {ref.written} ({ref.env} {ref.state})"
    if ref.outcome is Outcome.ALTERNATIVE:
        return f"the text of {ref.written} ({ref.env} {ref.state})"
    if ref.outcome is Outcome.OMITTED:
        return f"{ref.written}, empty ({ref.env} {ref.state})"
    if ref.outcome is Outcome.EMPTY:
        return f"{ref.written}, set but empty" if ref.env else f"{ref.written}, an empty file"
    return ref.written


def _check(refs: tuple[Reference, ...]) -> str:
    """Where to look: the spec reads as intended, the value it got is wrong."""
    places = []
    for ref in refs:
        if ref.outcome is Outcome.DEFAULT:
            places.append(f"set {ref.env}, or fix the default written in the spec")
        elif ref.outcome is Outcome.ALTERNATIVE:
            places.append(f"fix the text written in the spec for {ref.written}, or unset {ref.env}")
        elif ref.outcome is Outcome.OMITTED:
            places.append(f"set {ref.env}")
        elif ref.outcome is Outcome.EMPTY:
            places.append(f"give {ref.env} a value" if ref.env else f"write the value into {ref.file}")
        elif ref.env:
            places.append(f"check the environment variable {ref.env}")
        else:
            places.append(f"check the content of {ref.file}")
    hidden = any(_hidden(ref) for ref in refs)
    return "; ".join(places) + (" (its value is not shown: interpolated values are secret)" if hidden else "")


def _masked(text: str, found: Resolved) -> str:
    """``text`` with the value, and each part a reference put in, masked: messages are built
    not to repeat values, and this keeps it so should one ever quote its input."""
    for secret in sorted({found.value, *(ref.value for ref in found.references)}, key=len, reverse=True):
        if len(secret.strip()) >= _MIN_MASKED:  # in any case: a hint may offer a close name
            text = re.sub(re.escape(secret), SENSITIVE, text, flags=re.IGNORECASE)
    return text


def _leaf(path: PathKey) -> str:
    """How a message names the field: ``image``, ``ports[0]``, ``POSTGRES_PASSWORD``."""
    name = ""
    for part in reversed(path):
        name = f"[{part}]{name}" if isinstance(part, int) else f"{part}{name}"
        if not isinstance(part, int):
            return name
    return name or "the value"
