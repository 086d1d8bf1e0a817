"""What log lines and engine errors say, as patterns with a cause and a fix (pure).

Kept apart from the rules so the wording of each known message is in one table: add a
pattern here and the matching rule picks it up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BIND_ERRORS = (
    re.compile(r"(?:[\d.:\[\]a-f]*:(?P<port>\d+))?:? ?bind: address already in use", re.I),
    re.compile(r"Bind for [\d.:\[\]a-f]*:(?P<port>\d+) failed: port is already allocated", re.I),
    re.compile(r"port is already allocated", re.I),
    re.compile(r"address already in use", re.I),
    re.compile(r"could not bind .* (?:socket|address)", re.I),
)
_NETWORK_ERRORS = re.compile(r"network [\w.-]+ not found|No such network", re.I)
_MOUNT_ERRORS = re.compile(
    r"error while mounting volume|no such file or directory.*(?:mount|bind)|"
    r"(?:mount|bind) source path does not exist|invalid mount config", re.I)
_NO_SPACE = re.compile(r"No space left on device|could not extend file|disk full", re.I)
# What a terminal acts on (colour, cursor moves, a window title): CSI, OSC, then any other ESC pair
_TERMINAL_CODES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class ConfigError:
    """A configuration error a service printed, with what to do about it."""

    line: str
    cause: str
    fix: str
    newest: bool = False  # the last line the service printed: it is what stopped it


_CONFIG_PATTERNS: tuple[tuple[re.Pattern, str, str], ...] = (
    (re.compile(r'FATAL:.*data directory "(?P<x>[^"]+)" has (?:invalid permissions|wrong ownership)'),
     "PostgreSQL refuses its data directory {x}: wrong permissions or owner",
     "give the data directory to the postgres user with mode 0700 (e.g. chown -R 999:999 and "
     "chmod 0700 on the host folder), then `reconcile apply`"),
    (re.compile(r"FATAL:.*database files are incompatible with server"),
     "the data directory was made by another PostgreSQL major version",
     "run the image of the major that made the data, or restore a logical backup into a fresh "
     "volume: `reconcile apply` with the new image plans backup → recreate → restore"),
    (re.compile(r'FATAL:.*invalid value for parameter "(?P<x>[^"]+)"'),
     "PostgreSQL setting {x} has an invalid value",
     "fix the value of {x} in the service's command or configuration in the spec, then "
     "`reconcile apply`"),
    (re.compile(r'FATAL:.*unrecognized configuration parameter "(?P<x>[^"]+)"'),
     "PostgreSQL does not know the setting {x}",
     "remove or correct {x} in the service's command or configuration, then `reconcile apply`"),
    (re.compile(r"could not (?:open|read) configuration file \"?(?P<x>[^\"\s:]+)"),
     "the configuration file {x} cannot be read",
     "check the file is mounted at that path and readable by the service's user"),
    (re.compile(r"FATAL CONFIG FILE ERROR|Bad directive or wrong number of arguments"),
     "Redis refuses its configuration",
     "fix the directive named in the log lines in the service's command or redis.conf"),
    (re.compile(r"\[emerg\](?P<x>.*)"),
     "nginx refuses its configuration:{x}",
     "fix the nginx configuration file named in the log line; `nginx -t` checks it"),
)


def readable_logs(text: str) -> str:
    """A container's log text fit to print: its colour and other terminal codes removed (a
    log line could move the cursor over our lines, retitle the window, or leave escapes in a
    CI log), every other control character written as an escape (``\\x07``). Line breaks
    and tabs stay; the rules then match the words the service printed."""
    text = _TERMINAL_CODES.sub("", text)
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def bind_error(texts: list[str]) -> tuple[str, int | None] | None:
    """The first "address in use" message in ``texts`` and the port it names, if any."""
    for text in texts:
        for pattern in _BIND_ERRORS:
            match = pattern.search(text)
            if match:
                port = match.groupdict().get("port")
                return text.strip(), int(port) if port else None
    return None


def start_error_kind(error: str) -> str | None:
    """Which rule explains an engine start error: ``port``, ``network``, ``mount`` or None."""
    if not error:
        return None
    if bind_error([error]):
        return "port"
    if _NETWORK_ERRORS.search(error):
        return "network"
    if _MOUNT_ERRORS.search(error):
        return "mount"
    return None


def no_space(lines: tuple[str, ...] | list[str]) -> str | None:
    return next((line.strip() for line in reversed(lines) if _NO_SPACE.search(line)), None)


def config_errors(lines: tuple[str, ...] | list[str]) -> list[ConfigError]:
    """Distinct configuration errors in ``lines``, newest last, one per cause.

    PostgreSQL patterns need ``FATAL``: the same words at ``ERROR`` level come from a client's
    bad ``SET``, which does not stop the server.
    """
    found: dict[str, ConfigError] = {}
    last = len(lines) - 1
    for index, line in enumerate(lines):
        for pattern, cause, fix in _CONFIG_PATTERNS:
            match = pattern.search(line)
            if match:
                value = (match.groupdict().get("x") or "").strip()
                text = cause.format(x=value)
                found.pop(text, None)
                found[text] = ConfigError(line.strip(), text, fix.format(x=value or "it"), index == last)
    return list(found.values())
