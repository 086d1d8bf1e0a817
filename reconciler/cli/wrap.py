"""Long lines for a terminal: broken at spaces to its width, under a hanging indent.

A terminal breaks a line that is too long at column 0, through a plan's symbol column and
its indented field changes; these functions break it at word boundaries instead, and start
each continuation under the line's text. Pure (text and a width in, lines out) so it is
tested without a terminal; ``output.print_line`` decides when to use it (a terminal only).
"""

from __future__ import annotations

import io
import re
from functools import cache
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console

# Where a continuation line starts: past the leading spaces and a one-character symbol or
# bullet and its space (``  ~ ``, ``! ``, ``  | ``, ``… ``), or a label (``warning: ``,
# ``  hint: ``, ``error[ref] ``). A field change (``image: a → b``) continues under its name.
_LEAD = re.compile(r" *(?:[^\w\s] |(?:error|warning|note|hint|fix)(?:\[[^\]\s]*\] |: ))?")


def hanging_indent(line: str) -> int:
    return _LEAD.match(line).end()


def wrap_text(text: str, width: int, indent: int | None = None) -> str:
    """``text`` with each line wrapped at ``width`` cells (see ``wrap_line``); pure, for tests."""
    return "\n".join(piece.plain for piece in wrap_line(Text(text), width, indent))


def wrap_line(line: Text, width: int, indent: int | None = None) -> list[Text]:
    """Each line of ``line`` broken at spaces into lines of at most ``width`` cells, the
    continuations indented by ``indent`` (default: ``hanging_indent``; see ``_margin``). A
    word longer than the room is folded, never cut; styles carry over."""
    width = max(width, 2)
    return [piece for part in line.split("\n", allow_blank=True) for piece in _wrap_one(part, width, indent)]


def _wrap_one(line: Text, width: int, indent: int | None) -> list[Text]:
    if "\t" in line.plain:  # as the terminal would show them, so that widths are true
        line = line.copy()
        line.expand_tabs()
    if cell_len(line.plain) <= width:
        return [line]
    at = _margin(line.plain, width, indent)
    margin = cell_len(line.plain[:at])
    rows = line.divide(at + offset for offset in _breaks(line.plain[at:], width - margin))
    for row in rows:
        row.rstrip()
    return [rows[0], *(Text(" " * margin) + row for row in rows[1:] if row.plain)]


def _breaks(text: str, width: int) -> list[int]:
    """Where rich's word wrap (``Text.wrap``) breaks ``text``: where each row after the first
    starts. Dividing the styled line there, rather than wrapping a slice of it, leaves the
    first row's styles whole. A row rich changed (it never should) ends the search: the rest
    stays on one row, since no character may be lost."""
    starts, at = [], 0
    for row in Text(text).wrap(_wrapping_console(), width, overflow="fold"):
        content = row.plain.strip()  # a row of spaces alone (a folded run of them) starts where we are
        at = text.find(content, at)
        if at < 0:
            break
        starts.append(at)
        at += len(content)
    return starts[1:]


def _margin(line: str, width: int, indent: int | None) -> int:
    """Where the hanging indent ends (an offset into ``line``), within reason: a label wider
    than a third of the width (an error's long ``[reference]``) hangs four columns past the
    leading spaces instead, and no indent takes more than half the width, so the text always
    keeps room (at least three columns, enough for any character)."""
    at = hanging_indent(line) if indent is None else indent
    if at > width // 3:
        at = min(at, len(line) - len(line.lstrip(" ")) + 4)
    limit = at = min(at, width // 2)
    while cell_len(line[:at]) > limit:  # in characters, and wide ones take two columns
        at -= 1
    return at


@cache
def _wrapping_console() -> Console:
    """``Text.wrap`` asks for a console (only to justify, which plain wrapping does not do)."""
    from rich.console import Console

    return Console(file=io.StringIO())
