"""Counting a tar stream's members as it passes, without buffering or unpacking it.

Why: verify after a volume restore needs numbers to compare that do not depend on tar's
record padding or member order. Counted here: entries (files, folders, links…) and the
bytes of regular files, hard links counted once; GNU long-name and pax headers are
metadata, not entries. Verify re-archives the restored folders with the same tar and
counts again, so both sides use one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

BLOCK = 512
_METADATA = frozenset(b"LKxgX")  # GNU long name/link, pax extended/global, Solaris xattr
_REGULAR = frozenset(b"07\0")


@dataclass(frozen=True)
class TarCounts:
    entries: int
    content_bytes: int


class TarScanner:
    def __init__(self) -> None:
        self.entries = 0
        self.content_bytes = 0
        self._skip = 0          # data bytes (padded) still to pass before the next header
        self._header = b""      # a header split across chunks
        self.ended = False      # two zero blocks seen

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        pos = 0
        while pos < len(view) and not self.ended:
            if self._skip:
                step = min(self._skip, len(view) - pos)
                self._skip -= step
                pos += step
                continue
            need = BLOCK - len(self._header)
            self._header += bytes(view[pos:pos + need])
            pos += need
            if len(self._header) == BLOCK:
                self._on_header(self._header)
                self._header = b""

    def _on_header(self, header: bytes) -> None:
        if header == bytes(BLOCK):
            self.ended = True
            return
        size = _number(header[124:136])
        kind = header[156]
        self._skip = (size + BLOCK - 1) // BLOCK * BLOCK
        if kind in _METADATA:
            return
        self.entries += 1
        if kind in _REGULAR:
            self.content_bytes += size

    def counts(self) -> TarCounts:
        return TarCounts(self.entries, self.content_bytes)


def _number(field: bytes) -> int:
    """Octal, or GNU base-256 for sizes of 8 GiB and more."""
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0
