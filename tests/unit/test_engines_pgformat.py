"""The PostgreSQL stream: completion marker, multi-database sections, staging names."""

from __future__ import annotations

import io

import pytest

from reconciler.engines import pgformat
from reconciler.engines.pgswap import staging_name
from reconciler.engines.postgres import check_dump_complete
from reconciler.errors import BackupError

BODY = b"--\n-- PostgreSQL database dump\n--\n\nCOPY public.t (id) FROM stdin;\n1\n2\n\\.\n\n"
END = b"--\n-- PostgreSQL database dump complete\n--\n\n"
UNRESTRICT = b"\\unrestrict AbCdEf0123\n\n"


@pytest.mark.parametrize(("dump", "complete"), [
    (BODY + END, True),
    (BODY + END + UNRESTRICT, True),                    # pg_dump 15.14+/16.10+/17.6+
    (BODY + END.rstrip(b"\n"), True),
    (b"", False),                                        # empty dump
    (BODY, False),                                       # cut before the marker
    (BODY + END[:30], False),                            # cut inside the marker
    (BODY + END + b"\\unrestrict AbC", False),           # cut inside the last line
    (BODY + END + b"CREATE TABLE x ();\n", False),       # something after the marker
    (BODY + b"5\t-- PostgreSQL database dump complete", False),  # data that looks like it
])
def test_completion_marker(dump, complete):
    assert pgformat.dump_is_complete(dump[-pgformat.TAIL_KEEP:]) is complete


def test_truncated_dump_raises_backup_error():
    dump = BODY + END + UNRESTRICT
    check_dump_complete(dump, "shop")
    for cut in (5, len(UNRESTRICT) + 5, len(END) + len(UNRESTRICT)):
        with pytest.raises(BackupError) as caught:
            check_dump_complete(dump[:-cut], "shop")
        assert caught.value.ref == "backup.truncated" and "shop" in caught.value.message


def test_tail_keeps_only_the_end():
    tail = pgformat.Tail(keep=8)
    for chunk in (b"abc", b"defghij", b"k", b"0123456789xyz"):
        tail.add(chunk)
    assert tail.data == b"3456789xyz"[-8:]


def test_single_database_stream_is_one_part():
    stream = io.BytesIO(BODY + END)
    parts = [(name, b"".join(chunks)) for name, chunks in pgformat.SectionReader(stream).parts()]
    assert parts == [(None, BODY + END)]


def test_multi_database_sections_split_back_exactly():
    boundary = pgformat.new_boundary()
    dumps = {"app": BODY + END, 'we"ird db': BODY.replace(b"1\n", b"--fake\n") + END}
    raw = pgformat.multi_header(boundary)
    for name, dump in dumps.items():
        raw += pgformat.section_header(boundary, name) + dump
    raw += pgformat.section_end(boundary)
    reader = pgformat.SectionReader(io.BytesIO(raw))
    parts = {name: b"".join(chunks) for name, chunks in reader.parts()}
    assert parts == dumps and reader.ended


def test_multi_database_stream_cut_short_is_an_error():
    boundary = pgformat.new_boundary()
    raw = pgformat.multi_header(boundary) + pgformat.section_header(boundary, "app") + BODY
    with pytest.raises(ValueError):
        for _, chunks in pgformat.SectionReader(io.BytesIO(raw)).parts():
            b"".join(chunks)


def test_staging_name_fits_postgres_identifier_limit():
    assert staging_name("shop") == "shop__reconcile_restore"
    assert len(staging_name("x" * 63).encode()) <= 63
