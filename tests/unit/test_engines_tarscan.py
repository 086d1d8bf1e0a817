"""Tar member counting and the tree digest on a stream, split anywhere, against tarfile-made
archives."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from reconciler.engines.tarscan import (
    ASPECTS,
    GROUP_LIMIT,
    TarMember,
    TarScanner,
    TreeDigest,
    TreeDigestBuilder,
)


def archive(fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in [("d/a.txt", b"hello"), ("d/" + "long" * 40 + ".bin", b"\0" * 5000),
                           ("d/empty", b"")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("d")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        link = tarfile.TarInfo("d/hard")
        link.type, link.linkname = tarfile.LNKTYPE, "d/a.txt"
        tar.addfile(link)
    return out.getvalue()


def test_counts_match_whatever_the_chunking_and_format():
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        raw = archive(fmt)
        for size in (1, 100, 511, 512, 513, 4096, len(raw)):
            scanner = TarScanner()
            for start in range(0, len(raw), size):
                scanner.feed(raw[start:start + size])
            assert (scanner.entries, scanner.content_bytes, scanner.ended) == (5, 5005, True)


def scan(raw: bytes, roots=("d",), size: int = 0) -> tuple[list[TarMember], TreeDigest]:
    members: list[TarMember] = []
    tree = TreeDigestBuilder(list(roots))

    def both(member: TarMember) -> None:
        members.append(member)
        tree.add(member)

    scanner = TarScanner(both)
    size = size or len(raw)
    for start in range(0, len(raw), size):
        scanner.feed(raw[start:start + size])
    assert scanner.ended
    return members, tree.digest()


def tree_archive(files: dict[str, tuple[bytes, int, int, int, int]], fmt: int = tarfile.GNU_FORMAT,
                 order=None) -> bytes:
    """``files``: name → (content, mode, uid, gid, mtime); a folder ``d`` and a symlink first."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        folder = tarfile.TarInfo("d")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        link = tarfile.TarInfo("d/link")
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt"
        tar.addfile(link)
        for name in order or files:
            data, mode, uid, gid, mtime = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, gid, mtime
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


LONG = "d/sub/" + "long" * 40 + ".bin"
FILES = {"d/a.txt": (b"hello", 0o640, 1234, 2345, 1000), "d/b.txt": (b"other", 0o644, 0, 0, 1000),
         LONG: (b"\1" * 70000, 0o600, 5, 6, 1000)}


def test_members_carry_path_type_owner_mode_target_and_content_hash():
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        raw = tree_archive(FILES, fmt)
        whole, digest = scan(raw)
        by_path = {m.path.rstrip("/"): m for m in whole}
        assert by_path["d/a.txt"] == TarMember("d/a.txt", "file", 0o640, 1234, 2345, 5, "",
                                               hashlib.sha256(b"hello").hexdigest(), 1000 * 10**9)
        assert by_path[LONG].size == 70000 and by_path[LONG].uid == 5
        assert by_path["d/link"].type == "symlink" and by_path["d/link"].target == "a.txt"
        assert by_path["d"].type == "dir" and by_path["d"].mode == 0o755
        for size in (1, 511, 513, 4096):
            assert scan(raw, size=size) == (whole, digest)


def test_digest_ignores_order_and_mtime_but_sees_content_owner_and_mode():
    base = scan(tree_archive(FILES))[1]
    reordered = scan(tree_archive(FILES, order=[LONG, "d/b.txt", "d/a.txt"]))[1]
    touched = scan(tree_archive(FILES | {"d/a.txt": (b"hello", 0o640, 1234, 2345, 99999)}))[1]
    assert base == reordered == touched
    cases = {"content": (b"HELLO", 0o640, 1234, 2345, 1000), "owners": (b"hello", 0o640, 0, 0, 1000),
             "modes": (b"hello", 0o777, 1234, 2345, 1000)}
    for aspect, changed in cases.items():
        other = scan(tree_archive(FILES | {"d/a.txt": changed}))[1]
        assert base.differing_aspects(other) == [aspect]
        assert base.differing_groups(other) == ["d/a.txt"]
        assert base.sha256 != other.sha256
    added = scan(tree_archive(FILES | {"d/sub/new": (b"", 0o644, 0, 0, 1000)}))[1]
    assert base.differing_aspects(added) == list(ASPECTS)
    assert base.differing_groups(added) == ["d/sub"]  # named by the entry under the folder


def test_digest_survives_json_and_refuses_unknown_versions():
    digest = scan(tree_archive(FILES))[1]
    assert TreeDigest.from_dict(json.loads(json.dumps(digest.as_dict()))) == digest
    assert TreeDigest.from_dict(dict(digest.as_dict(), version=99)) is None
    assert TreeDigest.from_dict(None) is None


def test_too_many_top_level_entries_keep_the_aspects_but_drop_the_groups():
    many = {f"d/f{i}": (b"x", 0o644, 0, 0, 1) for i in range(GROUP_LIMIT + 1)}
    digest = scan(tree_archive(many))[1]
    assert digest.groups is None and digest.differing_groups(digest) is None
    assert set(digest.aspects) == set(ASPECTS)


def test_a_changed_entry_whose_name_holds_a_newline_is_reported_on_one_line():
    from reconciler.engines.volume import tree_checks

    base = scan(tree_archive(FILES))[1]
    odd = scan(tree_archive(FILES | {"d/new\nline": (b"x", 0o644, 0, 0, 1000)}))[1]
    [listed] = [c for c in tree_checks(base, odd, "/d") if c.name.startswith("changed entries")]
    assert listed.actual == "/d/new\\nline" and "\n" not in str(listed.actual)
