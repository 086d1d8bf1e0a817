"""Tar member counting on a stream, split anywhere, against tarfile-made archives."""

from __future__ import annotations

import io
import tarfile

from reconciler.engines.tarscan import TarScanner


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
