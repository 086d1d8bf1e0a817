"""Splitting a plain pg_dump stream into SQL and table data (engines/pgsplit.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.engines.pgsplit import CopyEnd, CopyStart, DumpSplitter, Rows, Script

DUMP = b"""--
-- PostgreSQL database dump
--

\\restrict AbC123

SET statement_timeout = 0;
SET client_encoding = 'LATIN1';
SELECT pg_catalog.set_config('search_path', '', false);
SET row_security = off;

--
-- Name: f(); Type: FUNCTION; Schema: public; Owner: app
--

CREATE FUNCTION public.f() RETURNS void
    LANGUAGE sql
    AS $$
COPY public.t (a) FROM stdin;
SET not_a_header = 1;
$$;

SET default_tablespace = '';

CREATE TABLE public.t (a integer, b text);

--
-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: app
--

COPY public.t (a, b) FROM stdin;
1\tone
2\t\\\\.not the end
3\t\\N
\\.


--
-- Data for Name: empty; Type: TABLE DATA; Schema: public; Owner: app
--

COPY public.empty (a) FROM stdin;
\\.


SELECT pg_catalog.setval('public.t_a_seq', 3, true);

ALTER TABLE ONLY public.t
    ADD CONSTRAINT t_pkey PRIMARY KEY (a);

--
-- PostgreSQL database dump complete
--

\\unrestrict AbC123

"""


def split(chunks):
    splitter = DumpSplitter()
    return splitter, list(splitter.events(chunks))


def rebuild(events) -> bytes:
    """The stream the events stand for (psql's view of it)."""
    out = []
    for event in events:
        match event:
            case Script(text):
                out.append(text)
            case CopyStart(statement):
                out.append(statement + b";\n")
            case Rows(data):
                out.append(data)
            case CopyEnd():
                out.append(b"\\.\n")
    return b"".join(out)


def test_events_name_the_tables_and_keep_everything_else_as_sql():
    splitter, events = split([DUMP])
    starts = [e.statement for e in events if isinstance(e, CopyStart)]
    assert starts == [b"COPY public.t (a, b) FROM stdin", b"COPY public.empty (a) FROM stdin"]
    rows = b"".join(e.data for e in events if isinstance(e, Rows))
    assert rows == b"1\tone\n2\t\\\\.not the end\n3\t\\N\n"
    sql = b"".join(e.text for e in events if isinstance(e, Script))
    assert b"COPY public.t (a) FROM stdin;\nSET not_a_header = 1;" in sql  # the function body
    assert sql.index(b"setval") > sql.index(b"CREATE TABLE")
    assert rebuild(events) == DUMP


def test_the_header_gives_settings_prelude_and_encoding():
    splitter, _ = split([DUMP])
    assert splitter.encoding == "LATIN1"
    assert splitter.settings == [b"SET statement_timeout = 0;\n", b"SET client_encoding = 'LATIN1';\n",
                                 b"SELECT pg_catalog.set_config('search_path', '', false);\n",
                                 b"SET row_security = off;\n"]
    assert splitter.prelude[0] == b"\\restrict AbC123\n" and splitter.prelude[1:] == splitter.settings


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(DUMP)), min_size=1, max_size=40))
def test_any_chunking_gives_the_same_events(cuts):
    points = sorted(set(c % len(DUMP) for c in cuts) | {0, len(DUMP)})
    chunks = [DUMP[a:b] for a, b in zip(points, points[1:])]
    _, events = split(chunks)
    assert rebuild(events) == DUMP
    assert [type(e) for e in events if not isinstance(e, Rows | Script)] == \
        [CopyStart, CopyEnd, CopyStart, CopyEnd]
    assert b"".join(e.data for e in events if isinstance(e, Rows)) == b"1\tone\n2\t\\\\.not the end\n3\t\\N\n"


def test_rows_always_end_at_a_line_end():
    _, events = split([DUMP[i:i + 7] for i in range(0, len(DUMP), 7)])
    assert all(e.data.endswith(b"\n") for e in events if isinstance(e, Rows))


def test_a_dump_cut_inside_table_data_is_an_error():
    cut = DUMP[:DUMP.index(b"3\t\\N")]
    with pytest.raises(ValueError, match="inside a table.s data"):
        split([cut])


def test_a_dump_without_data_is_all_sql():
    schema_only = DUMP[:DUMP.index(b"--\n-- Data for Name: t")]
    _, events = split([schema_only])
    assert all(isinstance(e, Script) for e in events)
    assert rebuild(events) == schema_only
