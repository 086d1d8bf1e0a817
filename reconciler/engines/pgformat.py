"""The PostgreSQL backup stream: pg_dump's plain SQL, and how several databases share one file.

One database (the seed's case): the stream is pg_dump's output, after the SQL that
recreates the roles and database properties it needs (``pgglobals``), so a ``.sql.gz``
can still be restored by hand with ``gunzip | psql -d NAME``.

Several databases: a header line naming a random boundary, then per database a boundary
line and a ``\\connect`` line (so ``psql -f`` by hand still lands each dump in its
database), then that database's pg_dump output; a final ``end`` boundary line. The
boundary is 128 random bits, so no row of data can fake it (MIME multipart's rule)::

    -- reconcile multi-database dump boundary=3f9c…
    --3f9c… database=app
    \\connect "app"
    <roles and database properties, pg_dump of app>
    --3f9c… end
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import quote, unquote

MARKER = b"-- PostgreSQL database dump complete"
MULTI_HEADER = b"-- reconcile multi-database dump boundary="
TAIL_KEEP = 4096
_CHUNK = 1024 * 1024
# After the marker pg_dump writes only comment lines, blank lines and (since 17.6/16.10/
# 15.14, CVE-2025-8714) a ``\unrestrict <key>`` line.
_AFTER_MARKER = re.compile(rb"(?:[ \t]*(?:--[^\n]*|\\unrestrict [^\n]*)?\n)*[ \t]*(?:--[^\n]*)?\Z")


class DumpFormatError(ValueError):
    """A multi-database stream whose framing is broken (cut short, missing header)."""


class Tail:
    """The last few KiB of a stream, for checking how it ends without keeping it."""

    def __init__(self, keep: int = TAIL_KEEP) -> None:
        self.keep = keep
        self.data = b""

    def add(self, chunk: bytes) -> None:
        if len(chunk) >= self.keep:
            self.data = bytes(chunk[-self.keep:])
        else:
            self.data = (self.data + chunk)[-self.keep:]


def dump_is_complete(tail: bytes) -> bool:
    """True when pg_dump's completion marker ends the stream (only comments may follow).

    pg_dump frames the marker as a three-line comment block; requiring the whole block
    keeps a row of data that happens to contain the marker's words from passing. An empty
    dump, one cut anywhere (a killed pg_dump, a full disk) or one with anything but
    comments after the marker is incomplete.
    """
    at = tail.rfind(b"--\n" + MARKER + b"\n--")
    if at < 0:
        return False
    rest = tail[at + 3 + len(MARKER):]
    return bool(_AFTER_MARKER.match(rest))


def new_boundary() -> str:
    return secrets.token_hex(16)


def multi_header(boundary: str) -> bytes:
    return MULTI_HEADER + boundary.encode() + b"\n"


def section_header(boundary: str, database: str) -> bytes:
    ident = '"' + database.replace('"', '""') + '"'
    return f"--{boundary} database={quote(database)}\n\\connect {ident}\n".encode()


def section_end(boundary: str) -> bytes:
    return f"--{boundary} end\n".encode()


class SectionReader:
    """Splits a backup stream into ``(database or None, chunks)`` parts, lazily, in order.

    Each part's chunk iterator must be consumed before asking for the next part. For a
    single-database stream there is one part named ``None`` (the caller knows the name).
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buf = b""
        self.ended = False

    def parts(self) -> Iterator[tuple[str | None, Iterator[bytes]]]:
        self._buf = self._stream.read(_CHUNK)
        if not self._buf.startswith(MULTI_HEADER):
            yield None, self._single()
            return
        header = self._line()
        boundary = header[len(MULTI_HEADER):].strip()
        delimiter = b"\n--" + boundary + b" "
        while True:
            line = self._line()
            if line == b"--" + boundary + b" end":
                self.ended = True
                return
            if not line.startswith(b"--" + boundary + b" database="):
                raise DumpFormatError("missing section header")
            name = unquote(line.split(b"database=", 1)[1].decode())
            self._line()  # the \connect line, for people restoring by hand
            yield name, self._body(delimiter)

    def _single(self) -> Iterator[bytes]:
        chunk = self._buf
        while chunk:
            yield chunk
            chunk = self._stream.read(_CHUNK)
        self.ended = True

    def _line(self) -> bytes:
        while b"\n" not in self._buf:
            more = self._stream.read(_CHUNK)
            if not more:
                raise DumpFormatError("the stream ends inside a header line")
            self._buf += more
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _body(self, delimiter: bytes) -> Iterator[bytes]:
        """Yield bytes up to and including the newline before the next boundary line."""
        while True:
            at = self._buf.find(delimiter)
            if at >= 0:
                yield self._buf[:at + 1]
                self._buf = self._buf[at + 1:]
                return
            keep = len(delimiter) - 1
            if len(self._buf) > keep:
                yield self._buf[:-keep]
                self._buf = self._buf[-keep:]
            more = self._stream.read(_CHUNK)
            if not more:
                raise DumpFormatError("the stream ends inside a database section")
            self._buf += more
