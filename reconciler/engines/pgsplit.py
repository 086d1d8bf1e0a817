"""Split one database's plain pg_dump stream into its SQL and its table data (pure).

A restore loads table data over several connections at once (``pgload``), so the stream
is taken apart: the SQL before the first table's data (schema: pre-data), each ``COPY …
FROM stdin;`` block's rows, and the SQL after (sequence values, then indexes and
constraints: post-data). Rows are passed on in whole lines, so they can go to any
connection. Only what pg_dump marks as table data counts as such: the ``COPY`` line must
follow a ``-- Data for Name: …; Type: TABLE DATA;`` comment header, so the text of a
function that happens to hold such a line is left alone.

The splitter never holds more than one chunk plus one partial line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_DATA_HEADER = re.compile(rb"^-- Data for Name: .*; Type: TABLE DATA; ")
_COPY = re.compile(rb"^COPY .+ FROM stdin;\n\Z")
_END = b"\\.\n"
# Session settings in pg_dump's header: one line each, before the first object.
_SETTING = re.compile(rb"^(?:SET [a-z_]+ = .*;|SELECT pg_catalog\.set_config\(.*\);)\n\Z")
_ENCODING = re.compile(rb"^SET client_encoding = '([A-Za-z0-9_]+)';")
_SCRIPT_FLUSH = 1024 * 1024


class DumpCutError(ValueError):
    """The stream ended inside a table's data: the dump is incomplete."""


@dataclass(frozen=True)
class Script:
    """SQL (and psql meta-commands such as ``\\restrict``) to run in order."""

    text: bytes


@dataclass(frozen=True)
class CopyStart:
    """A table's data begins: the ``COPY … FROM stdin`` statement, without the semicolon."""

    statement: bytes


@dataclass(frozen=True)
class Rows:
    """Whole lines of the current table's COPY data."""

    data: bytes


@dataclass(frozen=True)
class CopyEnd:
    """The current table's data ended (its ``\\.`` line)."""


Event = Script | CopyStart | Rows | CopyEnd


class DumpSplitter:
    """Iterate ``events(chunks)``; meanwhile it learns from pg_dump's header.

    ``settings``: the header's session settings (``SET …``), for the loading connections.
    ``prelude``: the header's settings and psql commands (``\\restrict``), in order, to start
    a second psql session in the state the first one was in.
    """

    def __init__(self) -> None:
        self.settings: list[bytes] = []
        self.prelude: list[bytes] = []
        self.encoding: str | None = None
        self._in_header = True
        self._data_next = False

    def events(self, chunks: Iterable[bytes]) -> Iterator[Event]:
        buf = b""
        script: list[bytes] = []
        size = 0
        in_copy = False
        for chunk in chunks:
            buf += chunk
            pos = 0
            while True:
                if in_copy:
                    pos, ended, rows = _rows(buf, pos)
                    if rows:
                        yield Rows(rows)
                    if not ended:
                        break
                    yield CopyEnd()
                    in_copy = False
                    continue
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    break
                line = buf[pos:nl + 1]
                pos = nl + 1
                if self._is_copy(line):
                    if script:
                        yield Script(b"".join(script))
                        script, size = [], 0
                    yield CopyStart(line[:-2])
                    in_copy = True
                    continue
                script.append(line)
                size += len(line)
                if size >= _SCRIPT_FLUSH:
                    yield Script(b"".join(script))
                    script, size = [], 0
            buf = buf[pos:]
        if in_copy:
            raise DumpCutError("the dump ends inside a table's data")
        if buf:
            script.append(buf)
        if script:
            yield Script(b"".join(script))

    def _is_copy(self, line: bytes) -> bool:
        """Whether ``line`` starts table data; also follows the header and TOC comments."""
        if line.startswith(b"--"):
            if line.startswith(b"-- Name: ") or line.startswith(b"-- Data for Name: "):
                self._in_header = False
            self._data_next = bool(_DATA_HEADER.match(line)) or (self._data_next and line == b"--\n")
            return False
        if line == b"\n":
            return False
        if self._data_next and _COPY.match(line):
            self._data_next = False
            return True
        self._data_next = False
        if self._in_header:
            if _SETTING.match(line):
                self.settings.append(line)
                self.prelude.append(line)
                if found := _ENCODING.match(line):
                    self.encoding = found[1].decode()
            elif line.startswith(b"\\restrict "):
                self.prelude.append(line)
        return False


def _rows(buf: bytes, pos: int) -> tuple[int, bool, bytes]:
    """From ``pos`` (a line start) in COPY data: (new pos, whether ``\\.`` ended it, whole lines)."""
    if buf.startswith(_END, pos):
        return pos + len(_END), True, b""
    at = buf.find(b"\n" + _END, pos)
    if at >= 0:
        return at + 1 + len(_END), True, buf[pos:at + 1]
    last = buf.rfind(b"\n", pos)
    if last < 0:
        return pos, False, b""
    return last + 1, False, buf[pos:last + 1]
