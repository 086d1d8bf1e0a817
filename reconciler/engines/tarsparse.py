"""GNU tar's sparse members in pax archives: the content as a restore writes it, holes included.

Why: a volume archive made with ``tar --format=posix --sparse`` stores only the data
segments of a sparse file (a 10 GiB file holding 1 MiB of data stores 1 MiB), under a
stand-in name (``GNUSparseFile.<pid>/<name>``), with the real name, the real size and the
map of segments in pax records (versions 0.0 and 0.1) or at the head of the member's data
(version 1.0, GNU tar's default). The tree digest must describe the file as restored, not
as stored: its real size, and SHA-256 of its bytes with every hole read as zeros, which is
also what a dense archive of the same file (one made before sparse archiving, or by a tar
that cannot) yields, so old and new archives of one tree digest alike.
"""

from __future__ import annotations

import hashlib
from collections import deque

_BLOCK = 512
_ZEROS = memoryview(bytes(1 << 20))
_MAX_MAP = 16 << 20  # a map larger than this is treated as damaged (its digest then differs)
SPARSE_KEYS = {b"GNU.sparse.major": "sparse_major", b"GNU.sparse.minor": "sparse_minor",
               b"GNU.sparse.name": "sparse_name", b"GNU.sparse.realsize": "sparse_realsize",
               b"GNU.sparse.size": "sparse_size", b"GNU.sparse.map": "sparse_map"}
SPARSE_LISTS = {b"GNU.sparse.offset": "sparse_offsets", b"GNU.sparse.numbytes": "sparse_numbytes"}


class SparseContent:
    """SHA-256 of a sparse member's logical bytes, fed its stored data as it passes.

    ``segments``: ``(offset, length)`` of each data segment; ``None`` for version 1.0, whose
    map (decimal lines: a count, then offset and length of each segment) fills the first
    blocks of the stored data and is read from there.
    """

    def __init__(self, real_size: int, segments: list[tuple[int, int]] | None) -> None:
        self.real_size = real_size
        self._hasher = hashlib.sha256()
        self._segments = None if segments is None else deque(segments)
        self._map = bytearray()
        self._pos = 0  # logical bytes hashed so far

    def update(self, data: memoryview | bytes) -> None:
        view = memoryview(data)
        while view and self._segments is None:
            view = self._read_map(view)
        while view and self._segments:
            offset, length = self._segments[0]
            self._zeros_to(offset)
            step = max(0, min(len(view), offset + length - self._pos, self.real_size - self._pos))
            self._hasher.update(view[:step])
            self._pos += step
            view = view[step:]
            if self._pos >= min(offset + length, self.real_size):
                self._segments.popleft()

    def hexdigest(self) -> str:
        self._zeros_to(self.real_size)
        return self._hasher.hexdigest()

    def _zeros_to(self, offset: int) -> None:
        while self._pos < min(offset, self.real_size):
            step = min(len(_ZEROS), min(offset, self.real_size) - self._pos)
            self._hasher.update(_ZEROS[:step])
            self._pos += step

    def _read_map(self, view: memoryview) -> memoryview:
        """Take the map's bytes a block at a time; after each whole block, try to read it."""
        step = min(len(view), _BLOCK - len(self._map) % _BLOCK)
        self._map += view[:step]
        if len(self._map) % _BLOCK == 0:
            self._segments = _map_lines(bytes(self._map)) if len(self._map) < _MAX_MAP else deque()
        return view[step:]


def _map_lines(text: bytes) -> deque[tuple[int, int]] | None:
    """The 1.0 map, or ``None`` while more of it is still to come (``[]`` when damaged)."""
    lines = text.split(b"\n")[:-1]
    try:
        numbers = [int(line) for line in lines[:1]]
        if not numbers:
            return None
        count = numbers[0]
        if len(lines) < 1 + 2 * count:
            return None if b"\0" not in text else deque()
        values = [int(line) for line in lines[1:1 + 2 * count]]
    except ValueError:
        return deque()
    return deque(zip(values[0::2], values[1::2], strict=True))


def sparse_content(pending: dict) -> SparseContent | None:
    """What the pax records before a member say of its sparseness; ``None`` for a plain member."""
    if str(pending.get("sparse_major")) == "1":
        return SparseContent(_int(pending.get("sparse_realsize")), None)
    if "sparse_map" in pending:
        numbers = [_int(n) for n in str(pending["sparse_map"]).split(",") if n.strip()]
        return SparseContent(_int(pending.get("sparse_size")), list(zip(numbers[0::2], numbers[1::2])))
    if "sparse_size" in pending:
        offsets, lengths = pending.get("sparse_offsets", []), pending.get("sparse_numbytes", [])
        return SparseContent(_int(pending["sparse_size"]), [(_int(o), _int(n)) for o, n in zip(offsets, lengths)])
    return None


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
