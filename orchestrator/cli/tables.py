"""Tables that fit a width, as plain lines: pure, no terminal, no colour.

A table is columns (a header, a kind, an importance) and rows of cells already formatted. Laid
out for a width, the more important columns are kept and the others left out (named in one note),
headers wrap at spaces, and only names are shortened (in the middle, with an ellipsis): a number
or a text cell is never cut or wrapped. Without a width (output that is not a terminal, with no
``COLUMNS``) the table is tab-separated fields, every column, nothing aligned to a guessed width,
its title and notes set aside for standard error. Widths are display cells, not characters.
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rich.cells import cell_len  # display width: a CJK character takes two cells, an accent none

Kind = Literal["name", "number", "text"]
NAME: Kind = "name"  # a model, a dataset, a URL: may be shortened in the middle
NUMBER: Kind = "number"  # right-aligned, never cut
TEXT: Kind = "text"  # left-aligned, never cut

GAP = "  "
ELLIPSIS = "…"
NO_BREAK = "\u00a0"
# Importance 1 to ESSENTIAL: columns kept at the price of shortened names; above it, columns left
# out before a name is shortened below NAME_WIDTH.
ESSENTIAL = 4
# Most timm names (architecture.pretrained_tag) fit 32 characters, e.g. the 30 of
# convnext_base.fb_in22k_ft_in1k: a longer one is shortened to it before a column is left out.
NAME_WIDTH = 32
# To keep the essential columns, names go down to 20 characters, which still show a timm name's
# architecture and the end of its tag ("convnext_b…k_ft_in1k")...
NAME_SHORT = 20
# ...and to 8 only where nothing else can go.
NAME_FLOOR = 8


@dataclass(frozen=True)
class Column:
    """``importance`` 0: always shown; a larger one is left out sooner; 1 to ``ESSENTIAL``: kept
    at the price of shortened names."""

    header: str
    kind: Kind = TEXT
    importance: int = 0


@dataclass(frozen=True)
class Row:
    cells: Sequence[str]
    style: str | None = None  # how a terminal shows the row (e.g. "yellow"); the edge decides


@dataclass(frozen=True)
class Table:
    columns: Sequence[Column]
    rows: Sequence[Row]
    title: str | None = None
    notes: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class Line:
    text: str
    style: str | None = None
    aside: bool = False  # a title or a note of tab-separated output: for people, on stderr


def render(table: Table, width: int | None, *, wide: bool = False) -> list[Line]:
    """The table's lines: fitted to ``width``; every column at its full width with ``wide``;
    tab-separated without a width."""
    if width is None:
        return _tab_separated(table)
    columns = list(table.columns)
    cells = [[_one_line(cell) for cell in row.cells] for row in table.rows]
    kept, widths = _layout(columns, cells, None if wide else width)
    lines = [Line(text) for text in [*prose(table.title, width), ""]] if table.title else []
    lines += _header(columns, kept, widths)
    lines += [
        Line(_joined(_cell(row[i], columns[i].kind, widths[i]) for i in kept), source.style)
        for row, source in zip(cells, table.rows, strict=True)
    ]
    notes = list(table.notes)
    # A header's words are held together (no-break spaces while wrapping): "saving 95% CI".
    left_out = [
        columns[i].header.replace(" ", NO_BREAK) for i in range(len(columns)) if i not in kept
    ]
    if left_out:
        notes.append(
            f"left out at {width} columns: {', '.join(left_out)} (--wide shows every column, "
            "--json every field)"
        )
    for note in notes:
        lines += [Line(text.replace(NO_BREAK, " ")) for text in prose(note, width)]
    return lines


def _one_line(cell: str) -> str:
    """A cell whose tabs, newlines and other control characters (a terminal's escapes) are
    spaces: a field stays one field, a row one line, and a name cannot drive the terminal."""
    if cell.isprintable():
        return cell
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in cell)


def prose(text: str, width: int | None) -> list[str]:
    """Text wrapped at spaces, as it is without a width. A word longer than the width (a path,
    a URL) stays whole on a line of its own: copied, it still works."""
    if width is None:
        return text.splitlines() or [""]
    return [
        wrapped
        for paragraph in text.splitlines() or [""]
        for wrapped in textwrap.wrap(
            paragraph, width, break_on_hyphens=False, break_long_words=False
        )
        or [""]
    ]


def shorten(name: str, width: int) -> str:
    """``name`` in ``width`` cells: its head and tail around an ellipsis."""
    if cell_len(name) <= width:
        return name
    if width <= 1:
        return ELLIPSIS[:width]
    head = width // 2  # the architecture, then the tag's end
    return _head(name, head) + ELLIPSIS + _head(name[::-1], width - 1 - head)[::-1]


def _head(text: str, cells: int) -> str:
    """The longest start of ``text`` that takes at most ``cells`` cells."""
    taken = 0
    for end, character in enumerate(text):
        taken += cell_len(character)
        if taken > cells:
            return text[:end]
    return text


def _tab_separated(table: Table) -> list[Line]:
    lines = [Line(text, aside=True) for text in prose(table.title, None)] if table.title else []
    lines.append(Line("\t".join(c.header for c in table.columns)))
    lines += [Line("\t".join(map(_one_line, row.cells)), row.style) for row in table.rows]
    notes = (Line(text, aside=True) for note in table.notes for text in prose(note, None))
    return [*lines, *notes]


def _layout(
    columns: list[Column], cells: list[list[str]], width: int | None
) -> tuple[list[int], list[int]]:
    """Which columns are shown (indices, in order) and each one's width.

    Precedence, for a table wider than ``width``: headers wrap on two lines, names longer than
    ``NAME_WIDTH`` are shortened to it, then the columns above ``ESSENTIAL`` are left out (the
    least important first), then names go down to ``NAME_SHORT`` and the essential columns are
    left out, and last names go down to ``NAME_FLOOR``. The room left over goes back to the
    shortened names, evenly, then to the wrapped headers, the more important columns first.
    """
    natural = [_natural(c, [row[i] for row in cells]) for i, c in enumerate(columns)]
    kept = list(range(len(columns)))
    if width is None:
        return kept, natural
    least = list(natural)
    for name_width, most_important in ((NAME_WIDTH, ESSENTIAL + 1), (NAME_SHORT, 1)):
        least = [_least(c, [row[i] for row in cells], name_width) for i, c in enumerate(columns)]
        droppable = sorted(
            (i for i in kept if columns[i].importance >= most_important),
            key=lambda i: (columns[i].importance, i),
        )
        while _total(least, kept) > width and droppable and len(kept) > 1:
            kept.remove(droppable.pop())
    if _total(least, kept) > width:
        least = [_least(c, [row[i] for row in cells], NAME_FLOOR) for i, c in enumerate(columns)]
    widths = list(least)
    spare = width - _total(widths, kept)
    short = [i for i in kept if columns[i].kind == NAME and widths[i] < natural[i]]
    while spare > 0 and short:  # shortened names grow evenly, one character each in turn
        for i in list(short):
            if spare > 0:
                widths[i] += 1
                spare -= 1
            if widths[i] == natural[i]:
                short.remove(i)
    for i in sorted(kept, key=lambda i: (columns[i].importance, i)):  # then headers unwrap
        grow = natural[i] - widths[i]
        if 0 < grow <= spare:
            widths[i] += grow
            spare -= grow
    return kept, widths


def _natural(column: Column, cells: list[str]) -> int:
    return max([cell_len(column.header), *map(cell_len, cells)])


def _least(column: Column, cells: list[str], name_width: int) -> int:
    """The narrowest the column gets: its header on two lines at most, and its longest cell (a
    name's only up to ``name_width``)."""
    longest = max(map(cell_len, cells), default=0)
    if column.kind == NAME:
        longest = min(longest, name_width)
    return max(_two_lines(column.header), longest, 1)


def _two_lines(header: str) -> int:
    """The width that wraps ``header`` on two lines at most (its longest word if one word)."""
    words = header.split()
    splits = (max(len(" ".join(words[:i])), len(" ".join(words[i:]))) for i in range(1, len(words)))
    return min(splits, default=len(header))


def _total(widths: list[int], kept: list[int]) -> int:
    return sum(widths[i] for i in kept) + len(GAP) * max(0, len(kept) - 1)


def _header(columns: list[Column], kept: list[int], widths: list[int]) -> list[Line]:
    """Headers wrapped at spaces and set on the same bottom line, then a rule under each."""
    wrapped = {
        i: textwrap.wrap(
            columns[i].header, widths[i], break_long_words=False, break_on_hyphens=False
        )
        or [""]
        for i in kept
    }
    height = max((len(w) for w in wrapped.values()), default=0)
    lines = []
    for level in range(height):
        parts = []
        for i in kept:
            offset = level - (height - len(wrapped[i]))
            text = wrapped[i][offset] if offset >= 0 else ""
            parts.append(_aligned(text, columns[i].kind, widths[i]))
        lines.append(Line(_joined(parts)))
    rule = ("-" * widths[i] if columns[i].header else " " * widths[i] for i in kept)
    return [*lines, Line(_joined(rule))]


def _cell(text: str, kind: Kind, width: int) -> str:
    return _aligned(shorten(text, width) if kind == NAME else text, kind, width)


def _aligned(text: str, kind: Kind, width: int) -> str:
    pad = " " * max(0, width - cell_len(text))
    return pad + text if kind == NUMBER else text + pad


def _joined(parts: Iterable[str]) -> str:
    return GAP.join(parts).rstrip()
