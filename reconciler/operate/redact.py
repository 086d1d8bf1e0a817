"""Take secrets out of text before it is logged, stored or sent.

What counts as secret is decided from the loaded spec, not guessed from the text: every env
value and every interpolated part (``${env:…}``, ``${file:…}``) of length ≥ 4. Shorter values
are too common ("1", "yes", "app") to replace without making logs unreadable, and too short
to be a credential worth the name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from reconciler.spec.interpolate import SENSITIVE
from reconciler.spec.load import LoadedSpec

MASK = "***"
MIN_LENGTH = 4


class Redactor:
    """Replaces each known secret value by ``***``, longest first (so a value containing
    another is masked whole)."""

    def __init__(self, values: Iterable[str], min_length: int = MIN_LENGTH) -> None:
        self.values = tuple(sorted({v for v in values if v and len(v) >= min_length},
                                   key=lambda v: (-len(v), v)))
        self._pattern = re.compile("|".join(re.escape(v) for v in self.values)) if self.values else None

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def redact_data(self, data: object) -> object:
        """Every string inside dicts, lists and tuples; keys are names, not secrets, and kept."""
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, dict):
            return {k: self.redact_data(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.redact_data(v) for v in data]
        return data

    @classmethod
    def for_spec(cls, loaded: LoadedSpec) -> Redactor:
        """Every env value of every service and every interpolated part of the spec."""
        env = [v.get_secret_value() for s in loaded.spec.services.values() for v in s.env.values()]
        return cls([*env, *interpolated_values(loaded)])

    @classmethod
    def for_service(cls, loaded: LoadedSpec, service: str) -> Redactor:
        """One service's env values, plus every interpolated part of the spec."""
        env = [v.get_secret_value() for v in loaded.spec.services[service].env.values()]
        return cls([*env, *interpolated_values(loaded)])


def interpolated_values(loaded: LoadedSpec) -> list[str]:
    """The substituted parts of each interpolated spec value, found by matching the display
    text (``postgresql://app:(sensitive)@db``) against the resolved value."""
    out = []
    for path, shown in loaded.display.items():
        value = _value_at(loaded.spec, path)
        if value is None:
            continue
        out.extend(_substituted(shown, value))
    return out


def _substituted(shown: str, value: str) -> list[str]:
    literal = shown.split(SENSITIVE)
    pattern = "(.*?)".join(re.escape(part) for part in literal)
    match = re.fullmatch(pattern, value, re.S)
    if match is None:
        return [value]  # the value was reshaped by parsing: mask it whole
    return [g for g in match.groups() if g]


def _value_at(node: object, path: tuple) -> str | None:
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
