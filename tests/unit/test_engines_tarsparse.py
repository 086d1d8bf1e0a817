"""GNU sparse members of pax archives (versions 0.0, 0.1, 1.0) and pax modification times,
scanned as restored: real name and size, content with holes as zeros, time to the nanosecond;
checked against Python's tarfile (an independent reader) and, where installed, GNU tar."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile

import pytest

from reconciler.engines.tarformat import (
    FORMAT_PAX,
    FORMAT_PLAIN,
    REDUCED,
    ArchiveNote,
    without_marker,
    written_with,
)
from reconciler.engines.tarscan import TarMember, TarScanner, TreeDigest, TreeDigestBuilder

BLOCK = 512
REAL_SIZE = 3 * 1024 * 1024 + 17
SEGMENTS = [(0, 5), (1024 * 1024 + 3, 4096), (REAL_SIZE - 4, 4)]
SEGMENT_DATA = [b"head!", bytes(range(256)) * 16, b"tail"]
NS_MTIME = "1704164645.123456789"


def logical_bytes() -> bytes:
    content = bytearray(REAL_SIZE)
    for (offset, length), data in zip(SEGMENTS, SEGMENT_DATA, strict=True):
        content[offset:offset + length] = data
    return bytes(content)


def pax_records(pairs: list[tuple[str, str]]) -> bytes:
    out = b""
    for key, value in pairs:
        body = f" {key}={value}\n".encode()
        length = len(body)
        while len(str(length).encode()) + len(body) != length:
            length = len(str(length).encode()) + len(body)
        out += str(length).encode() + body
    return out


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(name: str, records: list[tuple[str, str]], stored: bytes, mtime: int = 1704164645) -> bytes:
    """An ``x`` header with ``records`` (in order, repeats kept) and a ustar member."""
    extended = pax_records(records)
    header = tarfile.TarInfo("PaxHeaders/x")
    header.type, header.size = tarfile.XHDTYPE, len(extended)
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(stored), mtime, 0o640
    return (header.tobuf(tarfile.USTAR_FORMAT) + padded(extended) + info.tobuf(tarfile.USTAR_FORMAT)
            + padded(stored))


def sparse_archive(version: str) -> bytes:
    data = b"".join(SEGMENT_DATA)
    common = [("mtime", NS_MTIME)]
    if version == "1.0":
        numbers = [len(SEGMENTS)] + [n for segment in SEGMENTS for n in segment]
        stored = padded("".join(f"{n}\n" for n in numbers).encode()) + data
        records = [("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.name", "d/sparse.img"),
                   ("GNU.sparse.realsize", str(REAL_SIZE))]
        body = member("d/GNUSparseFile.123/sparse.img", common + records, stored)
    elif version == "0.1":
        records = [("GNU.sparse.size", str(REAL_SIZE)), ("GNU.sparse.numblocks", str(len(SEGMENTS))),
                   ("GNU.sparse.map", ",".join(str(n) for segment in SEGMENTS for n in segment)),
                   ("GNU.sparse.name", "d/sparse.img")]
        body = member("d/GNUSparseFile.123/sparse.img", common + records, data)
    else:
        records = [("GNU.sparse.size", str(REAL_SIZE)), ("GNU.sparse.numblocks", str(len(SEGMENTS)))]
        for offset, length in SEGMENTS:
            records += [("GNU.sparse.offset", str(offset)), ("GNU.sparse.numbytes", str(length))]
        body = member("d/sparse.img", common + records + [("path", "d/sparse.img")], data)
    plain = member("d/plain.txt", [("mtime", "1704164645.5")], b"plain\n")
    return body + plain + bytes(2 * BLOCK)


def scan(raw: bytes, size: int) -> tuple[TarScanner, list[TarMember], TreeDigest]:
    members: list[TarMember] = []
    tree = TreeDigestBuilder(["d"])

    def both(found: TarMember) -> None:
        members.append(found)
        tree.add(found)

    scanner = TarScanner(both)
    for start in range(0, len(raw), size):
        scanner.feed(raw[start:start + size])
    assert scanner.ended
    return scanner, members, tree.digest()


@pytest.mark.parametrize("version", ["1.0", "0.1", "0.0"])
def test_sparse_member_is_reported_as_restored(version):
    raw = sparse_archive(version)
    expected = hashlib.sha256(logical_bytes()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as reference:  # the independent reader agrees
        found = reference.getmember("d/sparse.img")
        assert found.size == REAL_SIZE
        assert hashlib.sha256(reference.extractfile(found).read()).hexdigest() == expected
    whole = None
    for size in (1, 7, 511, 512, 513, 4096, len(raw)):
        scanner, members, digest = scan(raw, size)
        sparse, plain = members
        assert (sparse.path, sparse.type, sparse.size, sparse.sha256) == ("d/sparse.img", "file", REAL_SIZE, expected)
        assert sparse.mtime_ns == 1704164645_123456789 and sparse.mode == 0o640
        assert plain.mtime_ns == 1704164645_500000000 and plain.sha256 == hashlib.sha256(b"plain\n").hexdigest()
        assert (scanner.entries, scanner.content_bytes, scanner.sparse_files) == (2, REAL_SIZE + 6, 1)
        whole = whole or (members, digest)
        assert (members, digest) == whole


def dense_archive() -> bytes:
    """The same tree as ``sparse_archive`` in GNU format, all bytes stored: as archives were made."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in [("d/sparse.img", logical_bytes()), ("d/plain.txt", b"plain\n")]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1704164645, 0o640
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_sparse_and_dense_archives_of_one_tree_count_and_digest_alike():
    """A backup made before sparse archiving verifies against a tree archived sparse, and back."""
    dense_scanner, dense_members, dense_digest = scan(dense_archive(), 65536)
    for version in ("1.0", "0.1", "0.0"):
        scanner, members, digest = scan(sparse_archive(version), 65536)
        assert digest == dense_digest
        assert (scanner.entries, scanner.content_bytes) == (dense_scanner.entries, dense_scanner.content_bytes)
        assert [m.sha256 for m in members] == [m.sha256 for m in dense_members]
    assert dense_scanner.sparse_files == 0 and dense_members[0].mtime_ns == 1704164645 * 10**9


def test_a_damaged_sparse_map_changes_the_digest_without_failing_the_scan():
    raw = sparse_archive("1.0")
    start = raw.index(b"3\n0\n5\n")
    damaged = raw[:start] + b"x" + raw[start + 1:]
    scanner, members, digest = scan(damaged, 4096)
    assert (members[0].path, members[0].size, scanner.entries) == ("d/sparse.img", REAL_SIZE, 2)
    assert members[0].sha256 != hashlib.sha256(logical_bytes()).hexdigest() and digest != scan(raw, 4096)[2]


@pytest.mark.parametrize(("record", "expected"), [
    ("1704164645.123456789", 1704164645_123456789), ("1704164645.5", 1704164645_500000000),
    ("1704164645", 1704164645_000000000), ("-1.25", -1_250000000), ("12.1234567891", 12_123456789)])
def test_pax_mtimes_are_exact_nanoseconds_and_stay_out_of_the_digest(record, expected):
    raw = member("d/a", [("mtime", record)], b"x") + bytes(2 * BLOCK)
    _, [found], digest = scan(raw, 100)
    assert found.mtime_ns == expected
    assert digest == scan(member("d/a", [], b"x", mtime=7) + bytes(2 * BLOCK), 100)[2]


def gnu_tar() -> str | None:
    tar = shutil.which("tar")
    if tar is None:
        return None
    version = subprocess.run([tar, "--version"], capture_output=True, text=True, check=False).stdout
    return tar if "GNU tar" in version else None


@pytest.mark.skipif(gnu_tar() is None, reason="GNU tar not installed")
def test_real_gnu_tar_pax_sparse_archive(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    content = logical_bytes()
    with open(folder / "sparse.img", "wb") as out:
        out.truncate(REAL_SIZE)
        for (offset, _), data in zip(SEGMENTS, SEGMENT_DATA, strict=True):
            out.seek(offset)
            out.write(data)
    subprocess.run(["touch", "-d", "2024-01-02 03:04:05.123456789", str(folder / "sparse.img")], check=True)
    archive = tmp_path / "a.tar"
    subprocess.run([gnu_tar(), "--format=posix", "--sparse", "--pax-option=delete=atime,delete=ctime",
                    "--numeric-owner", "-C", str(tmp_path), "-cf", str(archive), "d"], check=True)
    raw = archive.read_bytes()
    scanner, members, _ = scan(raw, 1000)
    [sparse] = [m for m in members if m.type == "file"]
    assert (sparse.path, sparse.size, sparse.sha256) == ("d/sparse.img", REAL_SIZE,
                                                         hashlib.sha256(content).hexdigest())
    assert sparse.mtime_ns % 10**9 == 123456789
    assert scanner.sparse_files == (1 if len(raw) < REAL_SIZE else 0)  # holes seen by the file system


def test_archive_note_from_the_helper_marker_and_from_metadata():
    stderr = b"tar: something\n\nreconcile-tar: posix tar (GNU tar) 1.34\n"
    note = written_with(stderr, 2)
    assert note == ArchiveNote(FORMAT_PAX, "tar (GNU tar) 1.34", 2)
    assert "note" not in note.as_dict() and ArchiveNote.from_dict(note.as_dict()) == note
    plain = written_with(b"\nreconcile-tar: plain unknown tar\n", 0)
    assert plain.format == FORMAT_PLAIN and plain.as_dict()["note"] == REDUCED
    assert ArchiveNote.from_dict(None) == ArchiveNote(FORMAT_PLAIN)  # a backup made before the note
    assert without_marker(stderr) == b"tar: something"
    digest = TreeDigest({"entries": "0"}, None, archive=note.as_dict())
    assert TreeDigest.from_dict(digest.as_dict()) == digest
    assert TreeDigest.from_dict({"version": 1, "aspects": {}}).archive is None
