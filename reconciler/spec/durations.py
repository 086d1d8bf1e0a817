"""Durations written the way operators write them: ``30s``, ``5m``, ``1h30m``, ``500ms``."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_NUMBER_UNIT = r"[0-9]+(?:\.[0-9]+)? *(?:ms|s|m|h)"
# ``1h30m``, ``1h 30m``, ``30 s``: spaces may stand around a unit, not inside a number (``1 0s``).
DURATION_TEXT = rf"\s*{_NUMBER_UNIT}(?: *{_NUMBER_UNIT})*\s*"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?) *(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_SECONDS = 365 * 24 * 3600  # sleeps and deadlines overflow long before .inf; no wait needs a year


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string such as ``2m30s``, at most a year."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30s, 5m or 1h")
    if isinstance(value, (int, float)):
        return _bounded(value)
    if isinstance(value, str) and re.fullmatch(DURATION_TEXT, value):
        return _bounded(sum(float(n) * _UNIT[u] for n, u in _PART.findall(value)))
    raise ValueError("a duration such as 30s, 5m or 1h")


def _bounded(seconds: float) -> float:
    """Compared before ``float()``: an int of 400 digits does not fit in a float."""
    if isinstance(seconds, float) and math.isnan(seconds):
        raise ValueError("a duration must be a number of seconds, not .nan")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_SECONDS:
        raise ValueError("a duration cannot be longer than a year (8760h)")
    return float(seconds)


def format_duration(seconds: float) -> str:
    if seconds < 1 and seconds:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
                              {"type": "string", "pattern": f"^{DURATION_TEXT}$"}],
                    "description": "seconds, or a duration such as 30s, 5m, 1h30m, 1h 30m"}),
]
