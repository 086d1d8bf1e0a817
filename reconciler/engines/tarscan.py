"""Reading a tar stream's members as it passes, without buffering or unpacking it.

Why: verify after a volume restore (and ``reconcile verify`` of a generic service) needs
facts to compare that do not depend on tar's record padding or member order. Counted here:
entries (files, folders, links…) and the bytes of regular files, hard links counted once;
GNU long-name and pax headers are metadata, not entries. Each member is also reported whole
(path, type, mode, owner, size, link target, SHA-256 of its content, hashed chunk by chunk
as the data passes) to ``on_member``, which ``TreeDigest`` folds into a digest of the tree.
Verify re-archives the live folders with the same tar and scans again, so both sides use
one definition. A GNU sparse member of a pax archive (``tar --format=posix --sparse``) is
reported as restored: its real name and size, its content hashed with the holes as zeros
(``tarsparse``), so it counts and digests like the same file in a dense archive. Pax
``mtime`` records give modification times to the nanosecond (``TarMember.mtime_ns``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.engines.tarsparse import SPARSE_KEYS, SPARSE_LISTS, sparse_content

BLOCK = 512
_METADATA = frozenset(b"LKxgX")  # GNU long name/link, pax extended/global, Solaris xattr
_REGULAR = frozenset(b"07\0")
_TYPES = {ord("0"): "file", 0: "file", ord("7"): "file", ord("1"): "hardlink", ord("2"): "symlink",
          ord("3"): "char", ord("4"): "block", ord("5"): "dir", ord("6"): "fifo"}
_MAX_METADATA = 1 << 20  # a long name or pax header larger than this is cut, not buffered
_PAX_KEYS = {b"path": "path", b"linkpath": "link", b"size": "size", b"uid": "uid", b"gid": "gid",
             b"mtime": "mtime"} | SPARSE_KEYS
_PAX_NUMBERS = ("size", "uid", "gid")


@dataclass(frozen=True)
class TarCounts:
    entries: int
    content_bytes: int


@dataclass(frozen=True)
class TarMember:
    """One entry as tar recorded it. ``target``: a link's target, ``major:minor`` of a device."""

    path: str
    type: str
    mode: int
    uid: int
    gid: int
    size: int
    target: str = ""
    sha256: str = ""  # content of a regular file (of a sparse one: with its holes as zeros)
    mtime_ns: int = 0


class TarScanner:
    def __init__(self, on_member: Callable[[TarMember], object] | None = None) -> None:
        self.entries = 0
        self.content_bytes = 0
        self.ended = False      # a zero block seen
        self.sparse_files = 0   # GNU sparse members (only GNU tar or libarchive restore them)
        self._on_member = on_member
        self._header = b""      # a header split across chunks
        self._remaining = 0     # data bytes of the current member still to pass
        self._padding = 0       # then padding bytes up to the next header
        self._member: dict | None = None        # the entry whose data is passing
        self._hasher = None                     # its content hash, for a regular file
        self._metadata: bytearray | None = None  # a long-name / pax header's data
        self._metadata_kind = 0
        self._pending: dict = {}                # what metadata headers said of the next entry

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        pos = 0
        while pos < len(view) and not self.ended:
            if self._remaining or self._padding:
                pos += self._pass_data(view[pos:])
                continue
            need = BLOCK - len(self._header)
            self._header += bytes(view[pos:pos + need])
            pos += need
            if len(self._header) == BLOCK:
                self._on_header(self._header)
                self._header = b""

    def _pass_data(self, view: memoryview) -> int:
        if not self._remaining:
            step = min(self._padding, len(view))
            self._padding -= step
            return step
        step = min(self._remaining, len(view))
        part = view[:step]
        if self._hasher is not None:
            self._hasher.update(part)
        elif self._metadata is not None and len(self._metadata) < _MAX_METADATA:
            self._metadata += part[:_MAX_METADATA - len(self._metadata)]
        self._remaining -= step
        if not self._remaining:
            self._end_member()
        return step

    def _on_header(self, header: bytes) -> None:
        if header == bytes(BLOCK):
            self.ended = True
            return
        kind = header[156]
        size = _number(header[124:136])
        if kind not in _METADATA:
            size = int(self._pending.get("size", size))
        self._remaining, self._padding = size, -size % BLOCK
        if kind in _METADATA:
            self._metadata, self._metadata_kind = bytearray(), kind
        else:
            self._start_entry(header, kind, size)
        if not size:
            self._end_member()

    def _start_entry(self, header: bytes, kind: int, size: int) -> None:
        self.entries += 1
        pending, self._pending = self._pending, {}
        regular = kind in _REGULAR
        if regular:
            sparse = sparse_content(pending)
            self.sparse_files += sparse is not None
            size = size if sparse is None else sparse.real_size
            self.content_bytes += size
            self._hasher = hashlib.sha256() if sparse is None else sparse
        target = pending.get("link", _text(header[157:257]))
        if kind in (ord("3"), ord("4")):
            target = f"{_number(header[329:337])}:{_number(header[337:345])}"
        self._member = {"path": pending.get("sparse_name") or pending.get("path") or _name(header),
                        "type": _TYPES.get(kind, f"type-{chr(kind)}"),
                        "mode": _number(header[100:108]) & 0o7777,
                        "uid": int(pending.get("uid", _number(header[108:116]))),
                        "gid": int(pending.get("gid", _number(header[116:124]))),
                        "size": size if regular else 0, "target": target,
                        "mtime_ns": _mtime_ns(pending.get("mtime"), header[136:148])}

    def _end_member(self) -> None:
        if self._member is not None:
            digest = self._hasher.hexdigest() if self._hasher is not None else ""
            member, self._member, self._hasher = self._member, None, None
            if self._on_member is not None:
                self._on_member(TarMember(**member, sha256=digest))
        elif self._metadata is not None:
            data, self._metadata = bytes(self._metadata), None
            if self._metadata_kind == ord("L"):
                self._pending["path"] = _text(data)
            elif self._metadata_kind == ord("K"):
                self._pending["link"] = _text(data)
            elif self._metadata_kind == ord("x"):
                self._pending |= _pax_records(data)

    def counts(self) -> TarCounts:
        return TarCounts(self.entries, self.content_bytes)


# -- the tree digest ---------------------------------------------------------------------------

DIGEST_VERSION = 1
ASPECTS = ("entries", "content", "owners", "modes")
GROUP_LIMIT = 64
_MODULUS = 1 << 256
_GROUP_MODULUS = 1 << 128


@dataclass(frozen=True)
class TreeDigest:
    """What a volume archive held, as digests: one per aspect, one per top-level entry.

    Each aspect is the sum, modulo 2**256, of SHA-256 of one line per member (its path and
    that aspect's value): a multiset hash, so tar's member order (the folders' order on
    disk, which a restore need not keep) does not matter, and no list of paths is held in
    memory however many files there are. ``entries``: type and link target; ``content``:
    size and SHA-256 of a regular file's bytes; ``owners``: numeric uid:gid; ``modes``:
    permission bits. Modification times are left out on purpose: a service that rewrites or
    touches a file with the same bytes has not changed its data, and a verify that failed
    on every touch would teach people to ignore it. ``groups``: a short digest per entry
    directly under each archived folder (``srv/data/a.txt``, ``srv/data/sub``), so verify can
    name where a difference is; absent when there are more than ``GROUP_LIMIT`` of them.
    This detects change; it is not a signature against someone forging a matching tree.
    ``archive``: how the archive was written (``tarformat.ArchiveNote``: its format, the tar
    that wrote it, what it could not keep); not part of the digest, and absent in backups
    made before it was recorded (plain GNU-format archives).
    """

    aspects: Mapping[str, str]
    groups: Mapping[str, str] | None = None
    version: int = DIGEST_VERSION
    archive: Mapping[str, object] | None = None

    @property
    def sha256(self) -> str:
        lines = "".join(f"{name}={self.aspects.get(name, '')}\n" for name in ASPECTS)
        return hashlib.sha256(lines.encode()).hexdigest()

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"version": self.version, "sha256": self.sha256,
                                   "aspects": dict(self.aspects)}
        if self.groups is not None:
            data["groups"] = dict(self.groups)
        if self.archive is not None:
            data["archive"] = dict(self.archive)
        return data

    @classmethod
    def from_dict(cls, data: object) -> TreeDigest | None:
        """``None`` for a digest this code cannot compare (absent, or a newer version)."""
        if not isinstance(data, Mapping) or data.get("version") != DIGEST_VERSION:
            return None
        groups, archive = data.get("groups"), data.get("archive")
        return cls(dict(data.get("aspects") or {}), None if groups is None else dict(groups),
                   archive=dict(archive) if isinstance(archive, Mapping) else None)

    def differing_aspects(self, other: TreeDigest) -> list[str]:
        return [name for name in ASPECTS if self.aspects.get(name) != other.aspects.get(name)]

    def differing_groups(self, other: TreeDigest) -> list[str] | None:
        """Top-level entries added, removed or changed; ``None`` when either side has none."""
        if self.groups is None or other.groups is None:
            return None
        names = set(self.groups) | set(other.groups)
        return sorted(n for n in names if self.groups.get(n) != other.groups.get(n))


class TreeDigestBuilder:
    """Folds ``TarMember``s into a ``TreeDigest``; ``roots``: the archived folders, relative."""

    def __init__(self, roots: Sequence[str]) -> None:
        self.roots = sorted((_clean(r) for r in roots), key=len, reverse=True)
        self._sums = dict.fromkeys(ASPECTS, 0)
        self._groups: dict[str, int] | None = {}

    def add(self, member: TarMember) -> None:
        path = _clean(member.path)
        values = {"entries": f"{member.type}\0{member.target}",
                  "content": f"{member.size}\0{member.sha256}",
                  "owners": f"{member.uid}:{member.gid}", "modes": f"{member.mode:04o}"}
        whole = 0
        for aspect, value in values.items():
            line = f"{aspect}\0{path}\0{value}\n".encode("utf-8", "surrogateescape")
            number = int.from_bytes(hashlib.sha256(line).digest(), "big")
            self._sums[aspect] = (self._sums[aspect] + number) % _MODULUS
            whole += number
        self._add_to_group(_group_of(path, self.roots), whole)

    def _add_to_group(self, group: str, number: int) -> None:
        if self._groups is None:
            return
        if group not in self._groups and len(self._groups) >= GROUP_LIMIT:
            self._groups = None
            return
        self._groups[group] = (self._groups.get(group, 0) + number) % _GROUP_MODULUS

    def digest(self) -> TreeDigest:
        aspects = {name: f"{value:064x}" for name, value in self._sums.items()}
        groups = None if self._groups is None else {g: f"{v:032x}" for g, v in sorted(self._groups.items())}
        return TreeDigest(aspects, groups)


def _group_of(path: str, roots: Sequence[str]) -> str:
    """The entry directly under the archived folder holding ``path`` (roots longest first)."""
    for root in roots:
        if path == root:
            return root
        if path.startswith(root + "/"):
            return f"{root}/{path[len(root) + 1:].split('/', 1)[0]}"
    return path.split("/", 1)[0]


def _clean(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path.strip("/")


def _name(header: bytes) -> str:
    """The member name; the POSIX ``prefix`` field only in a ustar header (GNU uses it for times)."""
    name = _text(header[0:100])
    if header[257:265] == b"ustar\x0000":
        prefix = _text(header[345:500])
        return f"{prefix}/{name}" if prefix else name
    return name


def _text(field_bytes: bytes) -> str:
    return field_bytes.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict:
    """``LEN key=value\\n`` records; only the keys that change what a member is (the sparse
    map of version 0.0 repeats its offset and numbytes keys: those are kept in order)."""
    found: dict = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            break
        if length <= 0:
            break
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        if key in _PAX_KEYS:
            name = _PAX_KEYS[key]
            found[name] = int(value) if name in _PAX_NUMBERS else value.decode("utf-8", "surrogateescape")
        elif key in SPARSE_LISTS:
            found.setdefault(SPARSE_LISTS[key], []).append(value.decode("ascii", "replace"))
        pos += length
    return found


def _mtime_ns(record: str | None, field_bytes: bytes) -> int:
    """A pax ``mtime`` (decimal seconds, maybe negative, up to nanoseconds) or the header's
    whole seconds, as integer nanoseconds (no float: it would round the last digits)."""
    if record:
        sign, text = (-1, record[1:]) if record.startswith("-") else (1, record)
        whole, _, fraction = text.partition(".")
        try:
            return sign * (int(whole or "0") * 10**9 + int((fraction + "000000000")[:9]))
        except ValueError:
            pass
    return _number(field_bytes) * 10**9


def _number(field_bytes: bytes) -> int:
    """Octal, or GNU base-256 for sizes of 8 GiB and more (and large ids)."""
    if field_bytes[0] & 0x80:
        return int.from_bytes(field_bytes[1:], "big")
    text = field_bytes.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0
