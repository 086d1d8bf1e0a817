"""Read the files a spec is made of (the spec, ``env_file``, ``${file:…}``) as UTF-8 text.

A file saved in another encoding (a Latin-1 ``# café``, a UTF-16 file from a Windows editor)
is an operator's mistake to fix, not a crash: ``NotUtf8Error`` says where the first byte that
is not UTF-8 sits (offset, line, column) so the error can point at it. The byte's value is
never shown: the file may hold a secret.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
MAX_SOURCE_BYTES = 1 << 20  # an env_file or ${file:…} holds a few values, not a megabyte of them


class NotUtf8Error(ValueError):
    """Where a file stops being UTF-8: 0-based byte ``offset``, 1-based ``line`` and ``col``;
    ``utf16`` says why the file looks like UTF-16, when it does."""

    def __init__(self, path: Path, offset: int, line: int, col: int, utf16: str = "") -> None:
        super().__init__(path, offset, line, col)
        self.path, self.offset, self.line, self.col, self.utf16 = path, offset, line, col, utf16

    def __str__(self) -> str:
        return self.describe(f"{self.path}")

    def describe(self, what: str) -> str:
        """``<what> is not UTF-8: …``, with the place of the first bad byte."""
        text = (f"{what} is not UTF-8: the byte at offset {self.offset} (line {self.line}, "
                f"column {self.col}) is not valid UTF-8")
        return f"{text}; it looks like UTF-16 ({self.utf16})" if self.utf16 else text

    @property
    def hint(self) -> str:
        source = "UTF-16" if self.utf16 else "LATIN1"
        return (f"save it as UTF-8 (UTF-8 in your editor's \"Save as\"), or convert it, e.g. "
                f"`iconv -f {source} -t UTF-8 {self.path.name} > {self.path.name}.new` "
                f"(if it was {'UTF-16' if self.utf16 else 'Latin-1'}) and put that in its place")


class UnfitFileError(ValueError):
    """A file a spec takes values from (``env_file``, ``${file:…}``) that cannot be one: a device
    such as ``/dev/zero`` would fill the memory, a FIFO would wait for a writer forever."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.hint = hint

    def describe(self, what: str) -> str:
        return f"{what} {self}"


def read_source(path: Path, limit: int = MAX_SOURCE_BYTES) -> str:
    """The text of a regular file of at most ``limit`` bytes, else ``UnfitFileError``
    (``NotUtf8Error`` and ``OSError`` as ``read_utf8``). Opened without blocking, so a FIFO is
    refused rather than waited on, and its type is checked on the open file, not before."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnfitFileError("is not a regular file (it is a folder, a device or a pipe)",
                                 "point it at a file that holds the value(s)")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise UnfitFileError(f"is larger than {_size(limit)}",
                             "it should hold a value or a few KEY=value lines: check the path")
    return decode_utf8(data, path)


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"


def read_utf8(path: Path) -> str:
    """The file's text; ``NotUtf8Error`` when it is not UTF-8 (``OSError`` as ``read_text``)."""
    return decode_utf8(path.read_bytes(), path)


def decode_utf8(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(data, exc.start, path) from None


def not_utf8(data: bytes, offset: int, path: Path) -> NotUtf8Error:
    """The error for the bad byte at ``offset``; the column counts characters, not bytes
    (what precedes the bad byte on its line decodes, since it is the first bad one)."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    utf16 = ("it starts with a UTF-16 byte-order mark" if data.startswith(_UTF16_BOMS)
             else "it holds NUL bytes" if b"\x00" in data else "")
    return NotUtf8Error(path, offset, data.count(b"\n", 0, offset) + 1, col, utf16)
