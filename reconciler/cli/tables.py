"""How human output looks: tables that fit the terminal without cutting a number or an id,
amounts with thousands separators, ids in one short form, a break's history in a few lines.

Invariant: an amount, an id or a hash printed for a person is printed whole, never ellipsized
or folded: when a table is too wide, less important columns are left out (its caption says
which; `--json` has every field), and when even the essential ones do not fit, each row is
printed one field per line. JSON documents never go through here (no separators there).

Invariant: text from outside (a node's message, a note, a name in a CSV file) is never read as
Rich markup or emoji codes and never reaches the terminal with a control character: every
console here is a `SafeConsole` (no markup, no emoji, control characters shown as escapes), and
every table cell and field value goes through `shown`, which also shows a newline inside a
value as ``\\n`` (a cell of several lines is a tuple of lines, each shown).
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleDimensions, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

from reconciler.domain import abbreviate_ids, format_amount
from reconciler.redaction import neutralise

PIPE_WIDTH = 200  # off a terminal (a pipe, a log) with no COLUMNS: room for whole rows
COLUMN_GAP = 2  # the table style below puts two spaces between columns and none at the edges
WRAP_FLOOR = 16  # free text (a reason, a note) is not squeezed narrower than this
NONE = "—"  # what a missing value looks like to a person (never Python's None)

_DECIMAL = re.compile(r"(-?)([0-9]+)(\.[0-9]+)?")


def shown(value: object) -> str:
    """Text from outside as a person sees it: every control character a visible escape (ESC as
    ``\\x1b``, a newline as ``\\n``); brackets are kept as written (no console here reads markup)."""
    return neutralise(str(value))


Cell = str | tuple[str, ...]  # a tuple: a cell of several lines (a wallet's owners), one per entry


def cell_text(cell: Cell) -> str:
    """A cell as it is printed: each of its lines `shown`, joined by newlines."""
    return "\n".join(shown(line) for line in cell) if isinstance(cell, tuple) else shown(cell)


class SafeConsole(Console):
    """Rich's console that never reads markup or emoji codes in what it prints (``[/v1]`` and
    ``:warning:`` print as written) and shows control characters as escapes, newlines kept:
    what it is asked to print is composed here, but may quote text from outside. Colours are
    given as ``style=``. Sized when it prints (not when it is built): COLUMNS when set, else the
    terminal's width, else (a pipe, a log) PIPE_WIDTH, wide enough for whole rows."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("emoji", False)
        kwargs.setdefault("highlight", False)
        super().__init__(**kwargs)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        # Never crop: a table's layout already fits the width, and what does not (an id longer
        # than the terminal, in the one-field-per-line layout) is printed whole, not cut.
        kwargs.setdefault("crop", False)
        super().print(*objects, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs["markup"] = False
        kwargs["emoji"] = False
        return super().render_str(neutralise(text, keep_newlines=True), **kwargs)

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if os.environ.get("COLUMNS", "").isdigit() or self._width is not None:
            return dims
        try:
            on_terminal = self.file.isatty()
        except (AttributeError, ValueError):
            on_terminal = False
        return dims if on_terminal else ConsoleDimensions(PIPE_WIDTH, dims.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


# ---------------------------------------------------------------------- values


def group_digits(text: str) -> str:
    """Thousands separators in a plain decimal string (``-1000000.000000`` ->
    ``-1,000,000.000000``); anything else is returned as it is."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        return text
    sign, whole, fraction = match.groups()
    return f"{sign}{int(whole):,}{fraction or ''}"


def human_amount(units: int | None, decimals: int | None) -> str:
    """An amount for a person: asset units with the asset's full decimals and separators; in
    base units (said so) where the decimals are not known."""
    if units is None:
        return NONE
    if decimals is None:
        return f"{units:,} base units"
    return group_digits(format_amount(units, decimals))


def human_display(amount: str | None, display: str | None) -> str:
    """A JSON document's amount (``amount`` in base units, ``display`` its ``*_display`` twin)
    for a person: the display form with separators; in base units, said so, where the document
    had no decimals for it (the display is then the base units again)."""
    if amount is None:
        return NONE
    if display is not None and "." in display:
        return group_digits(display)
    return f"{int(amount):,} base units"


def human_number(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


def human_instant(iso: str | datetime | None) -> str:
    """``2026-11-24 10:00:05`` (UTC) from an ISO 8601 instant."""
    if iso is None:
        return NONE
    at = iso if isinstance(iso, datetime) else datetime.fromisoformat(iso)
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def human_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def human_value(value: Any) -> Cell:
    """A JSON value for a person: no Python None, lists one per line (a tuple of lines)."""
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return tuple(str(human_value(v)) for v in value) or "[]"
    return str(value)


def _money(value: str | None) -> str:
    """A USD amount of a segregation document ("-1250000.50") with separators; "-" when None."""
    if value is None:
        return "-"
    sign = "-" if value.startswith("-") else ""
    whole, _, cents = value.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}.{cents}"


# ---------------------------------------------------------------------- a run's summary


@dataclass(frozen=True, slots=True)
class ChainView:
    """What a person is told of one chain of a run: where it was pinned and how it was read."""

    name: str
    block_number: int | None
    block_hash: str | None
    head: int | None = None
    confirmations: int | None = None
    read_path: str | None = None
    scanned: tuple[int | None, int | None, int, int] | None = None  # from, to, observed, reorged


def chain_lines(chains: Sequence[ChainView], unread: str = "not read (see the reason below)") -> list[str]:
    """Per chain: ``eth  block 1,234 (head 1,240, 6 confirmations)  multicall`` and its hash
    (a scan: the blocks it observed), so an on-chain zero at a lagging pin can be understood."""
    width = max((len(c.name) for c in chains), default=0)
    lines = []
    for c in chains:
        name = f"{c.name:<{width}}"
        if c.block_number is None:
            lines.append(f"{name}  {unread}")
            continue
        context = ", ".join(
            part
            for part in (
                f"head {c.head:,}" if c.head is not None else "",
                _plural(c.confirmations, "confirmation") if c.confirmations is not None else "",
            )
            if part
        )
        around = f" ({context})" if context else ""
        if c.scanned is not None:
            first, last, observed, reorged = c.scanned
            if first is not None and last is not None and first <= last:
                blocks = f"blocks {first:,}..{last:,}: {_plural(observed, 'movement')} observed, {reorged:,} reorged"
            else:
                blocks = f"no new blocks up to {c.block_number:,}"
            lines.append(f"{name}  {blocks}{around}")
        else:
            lines.append(f"{name}  block {c.block_number:,}{around}" + (f"  {c.read_path}" if c.read_path else ""))
        if c.block_hash:
            lines.append(f"{'':<{width}}  hash {c.block_hash}")
    return lines


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def breaks_summary(run_id: str, breaks: Sequence[tuple[str, str | None, str | None]]) -> str:
    """``breaks open: 1 new, 2 seen again, 0 acknowledged; resolved this run: 1`` from each
    break's (status, first_run_id, last_run_id) as a run reported them; open breaks the run did
    not look at (a scan, an unread chain) are counted apart."""
    opened = [(first, last) for status, first, last in breaks if status == "open"]
    new = sum(1 for first, _ in opened if first == run_id)
    again = sum(1 for first, last in opened if first != run_id and last == run_id)
    unchecked = sum(1 for _, last in opened if last != run_id)
    acked = sum(1 for status, _, _ in breaks if status == "acknowledged")
    resolved = sum(1 for status, _, _ in breaks if status == "resolved")
    line = f"breaks open: {new:,} new, {again:,} seen again, {acked:,} acknowledged"
    if unchecked:
        line += f", {unchecked:,} not checked by this run"
    return line + f"; resolved this run: {resolved:,}"


# ---------------------------------------------------------------------- tables


@dataclass(frozen=True, slots=True)
class Col:
    """A column of a human table.

    ``whole``: an amount, an id, a hash, a time: printed whole or the layout changes.
    ``drop``: when the table is too wide, columns are left out in this order (1 first, then
    2, …; 0: never). ``wrap``: free text that may wrap onto more lines."""

    header: str
    justify: str = "left"
    whole: bool = False
    drop: int = 0
    wrap: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    cells: Sequence[Cell]
    style: str | None = None


@dataclass(frozen=True, slots=True)
class _Printed:
    """A row as printed: each cell `cell_text`, a newline only between the lines of a tuple."""

    cells: Sequence[str]
    style: str | None


def _printable(rows: Sequence[Row]) -> list[_Printed]:
    return [_Printed(tuple(cell_text(c) for c in row.cells), row.style) for row in rows]


def _text_width(text: str) -> int:
    return max((cell_len(line) for line in text.split("\n")), default=0)


def fit_table(
    width: int, columns: Sequence[Col], rows: Sequence[Row], title: str | None = None
) -> RenderableType:
    """``rows`` as a table no wider than ``width``: every column if it fits; else without the
    columns that matter least (the caption names them); else one field per line."""
    printed = _printable(rows)
    title = shown(title) if title is not None else None
    natural = [_text_width(c.header) for c in columns]
    for row in printed:
        for i, cell in enumerate(row.cells):
            natural[i] = max(natural[i], _text_width(cell))
    floor = [min(n, WRAP_FLOOR) if c.wrap else n for c, n in zip(columns, natural, strict=True)]

    def total(indices: Sequence[int], widths: Sequence[int]) -> int:
        return sum(widths[i] for i in indices) + COLUMN_GAP * (len(indices) - 1)

    kept = list(range(len(columns)))
    if total(kept, natural) <= width:
        return _table(columns, printed, kept, natural, title, ())
    droppable = sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: (columns[i].drop, -i))
    dropped: list[int] = []
    while total(kept, floor) > width and droppable:
        gone = droppable.pop(0)
        kept.remove(gone)
        dropped.append(gone)
    if total(kept, floor) > width or not kept:
        return _vertical(columns, printed, title, width)
    # Free-text columns share what is left, each at least its floor and at most its natural width.
    widths = list(natural)
    slack = width - total(kept, floor)
    for i in kept:
        if columns[i].wrap:
            widths[i] = min(natural[i], floor[i] + slack)
            slack -= widths[i] - floor[i]
    return _table(columns, printed, kept, widths, title, [columns[i].header for i in dropped])


class Lines:
    """Lines printed as they are (never wrapped, never cut), each with its style: a large table
    (40,000 positions) renders in a fraction of the time a Rich Table takes."""

    def __init__(self, lines: Sequence[tuple[str, str | None]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        styles: dict[str, Style] = {}
        for text, style in self.lines:
            if style:
                if style not in styles:
                    styles[style] = console.get_style(style)
                yield Segment(text, styles[style])
            else:
                yield Segment(text)
            yield Segment.line()


def _plain_table(
    columns: Sequence[Col],
    rows: Sequence[_Printed],
    kept: Sequence[int],
    widths: Sequence[int],
    title: str | None,
    caption: str | None,
) -> Lines:
    def cells(values: Sequence[str]) -> list[str]:
        """One logical row as physical lines (a cell may hold several lines, e.g. owners)."""
        split = [values[i].split("\n") for i in kept]
        height = max((len(parts) for parts in split), default=1)
        out = []
        for n in range(height):
            parts = []
            for i, lines in zip(kept, split, strict=True):
                text = lines[n] if n < len(lines) else ""
                pad = widths[i] - cell_len(text)
                parts.append(" " * pad + text if columns[i].justify == "right" else text + " " * pad)
            out.append((" " * COLUMN_GAP).join(parts).rstrip())
        return out

    width = sum(widths[i] for i in kept) + COLUMN_GAP * (len(kept) - 1)
    lines: list[tuple[str, str | None]] = []
    if title:
        lines.append((title, "table.title"))
    lines += [(line, "table.header") for line in cells([c.header for c in columns])]
    lines.append(("─" * width, None))
    for row in rows:
        lines += [(line, row.style) for line in cells(row.cells)]
    if caption:
        lines += [(line, "table.caption") for line in textwrap.wrap(caption, max(width, WRAP_FLOOR))]
    return Lines(lines)


def _table(
    columns: Sequence[Col],
    rows: Sequence[_Printed],
    kept: Sequence[int],
    widths: Sequence[int],
    title: str | None,
    dropped: Sequence[str],
) -> RenderableType:
    caption = (
        f"not shown at this width: {', '.join(dropped)} (--json has every field)"
        if dropped
        else None
    )
    if not any(columns[i].wrap for i in kept):
        return _plain_table(columns, rows, kept, widths, title, caption)
    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        padding=(0, 1),
    )
    for i in kept:
        c = columns[i]
        if c.wrap:
            table.add_column(c.header, justify=c.justify, overflow="fold", max_width=widths[i])  # type: ignore[arg-type]
        else:
            # min_width: Rich never squeezes it (it would fold an amount or an id in two).
            table.add_column(c.header, justify=c.justify, no_wrap=True, min_width=widths[i])  # type: ignore[arg-type]
    for row in rows:
        # Text, not markup: a reason like "see [chains.local] rpc_urls" must print as it is.
        table.add_row(*(Text(row.cells[i]) for i in kept), style=row.style)
    return table


def vertical(columns: Sequence[Col], rows: Sequence[Row], title: str | None = None) -> RenderableType:
    """One field per line (``header  value``), a blank line between rows: for terminals too
    narrow for the table. Lines are never wrapped, so a value stays whole for copying."""
    return _vertical(columns, _printable(rows), shown(title) if title is not None else None)


def _vertical(
    columns: Sequence[Col], rows: Sequence[_Printed], title: str | None, width: int | None = None
) -> RenderableType:
    """Free text (a ``wrap`` column) wrapped at spaces to ``width`` under its own column; a
    value that is one word (an id, a hash) is printed whole even when longer than the width."""
    label = max((_text_width(c.header) for c in columns), default=0)
    lines: list[tuple[str, str | None]] = []
    if title:
        lines.append((title, "table.title"))
    for n, row in enumerate(rows):
        if n or title:
            lines.append(("", None))
        for c, cell in zip(columns, row.cells, strict=True):
            lead = f"{c.header:<{label}}  "
            if c.wrap and width is not None:
                lines += [(line, row.style) for line in hanging(lead, cell or NONE, width)]
                continue
            first, *rest = (cell or NONE).split("\n")
            lines.append((f"{lead}{first}".rstrip(), row.style))
            lines += [(f"{'':<{label}}  {more}".rstrip(), row.style) for more in rest]
    return Lines(lines)


def fields(pairs: Sequence[tuple[str, Cell | None]], width: int) -> list[str]:
    """``label  value`` lines for one record, free text wrapped at spaces under its own column
    (a token longer than the room left, a hash, is never broken); a value of None is left out
    (never "None"); a value is `shown` (a tuple: one line each)."""
    given = [(label, value) for label, value in pairs if value is not None]
    label_width = max((len(label) for label, _ in given), default=0)
    lines: list[str] = []
    for label, value in given:
        lines += hanging(f"{label:<{label_width}}  ", cell_text(value), width)
    return lines


def wrap_lines(text: str, width: int, hang: int = 2) -> list[str]:
    """Each line of ``text`` wrapped at spaces to ``width``, its later lines indented ``hang``
    more than its own indent; a word (an id, a hash, a URL) is never broken, and one longer than
    the width stands alone on its line rather than being cut."""
    out: list[str] = []
    for line in text.split("\n"):
        body = line.lstrip(" ")
        indent = " " * (len(line) - len(body))
        out += textwrap.wrap(
            body,
            max(width, WRAP_FLOOR),
            initial_indent=indent,
            subsequent_indent=indent + " " * hang,
            break_long_words=False,
            break_on_hyphens=False,
        ) or [indent.rstrip()]
    return out


def say(console: Console, text: str, style: str | None = None, hang: int = 2) -> None:
    """Print a line of prose (a summary, a reason) wrapped at spaces to the console's width, so a
    terminal never wraps it in the middle of a word."""
    for line in wrap_lines(text, console.width, hang):
        console.print(line, style=style, soft_wrap=True)


def hanging(lead: str, text: str, width: int) -> list[str]:
    """``text`` after ``lead``, wrapped at spaces to ``width`` with its later lines indented
    under its first; words are never broken."""
    room = max(width - len(lead), WRAP_FLOOR)
    out: list[str] = []
    for n, paragraph in enumerate(text.split("\n")):
        wrapped = textwrap.wrap(paragraph, room, break_long_words=False, break_on_hyphens=False) or [""]
        for m, line in enumerate(wrapped):
            if n == 0 and m == 0:
                out.append(lead + line)
            else:
                # A token too long for the indented column (a hash in a detail) moves left, whole.
                out.append(" " * max(0, min(len(lead), width - len(line))) + line)
    return [line.rstrip() for line in out]


def history_lines(lines: Sequence[HistoryLine], width: int, indent: str = "  ") -> list[str]:
    event_width = max((len(line.event) for line in lines), default=0)
    out: list[str] = []
    for line in lines:
        out += hanging(f"{indent}{line.at}  {line.event:<{event_width}}  ", shown(line.text), width)
    return out


# ---------------------------------------------------------------------- a break's history


@dataclass(frozen=True, slots=True)
class HistoryLine:
    at: str
    event: str
    text: str


def break_history(events: Sequence[Mapping[str, Any]], short: Mapping[str, str]) -> list[HistoryLine]:
    """A break's events for a person: consecutive "seen" events at the same amount as one line
    (a 5-minute schedule sees a break hundreds of times a day); opened, escalated,
    acknowledged and resolved events, and every change of amount, each keep their own line.
    ``events`` are `breaks show --json` event documents; ``short`` maps run ids to short ids."""
    lines: list[HistoryLine] = []
    previous_amount: str | None = None
    i = 0
    while i < len(events):
        e = events[i]
        amount = e.get("amount_display")
        changed = amount is not None and previous_amount is not None and amount != previous_amount
        if e["event"] == "seen":
            j = i
            while (
                j + 1 < len(events)
                and events[j + 1]["event"] == "seen"
                and events[j + 1].get("amount_display") == amount
            ):
                j += 1
            group = events[i : j + 1]
            lines.append(_seen_line(group, short, previous_amount if changed else None))
            i = j + 1
        else:
            lines.append(_event_line(e, short, previous_amount if changed else None))
            i += 1
        if amount is not None:
            previous_amount = amount
    return lines


def _run(run_id: str | None, short: Mapping[str, str]) -> str:
    return NONE if run_id is None else short.get(run_id, run_id)


def _amount_text(amount: str | None, was: str | None) -> str:
    if amount is None:
        return ""
    shown = group_digits(amount)
    return f"amount {shown}" + (f" (was {group_digits(was)})" if was is not None else "")


def _seen_line(group: Sequence[Mapping[str, Any]], short: Mapping[str, str], was: str | None) -> HistoryLine:
    first, last = group[0], group[-1]
    amount = _amount_text(first.get("amount_display"), was)
    if len(group) == 1:
        parts = [f"run {_run(first['run_id'], short)}"]
        if first.get("block_number") is not None:
            parts.append(f"block {human_number(first['block_number'])}")
        return HistoryLine(human_instant(first["at"]), "seen", "  ".join([*parts, amount]).rstrip())
    runs = f"runs {_run(first['run_id'], short)} … {_run(last['run_id'], short)}"
    blocks = ""
    if first.get("block_number") is not None and last.get("block_number") is not None:
        first_block, last_block = human_number(first["block_number"]), human_number(last["block_number"])
        blocks = f", block {first_block}" if first_block == last_block else f", blocks {first_block} → {last_block}"
    text = (
        f"{len(group)} times, {human_instant(first['at'])} → {human_instant(last['at'])} ({runs}){blocks}"
        + (f", {amount}" if amount else "")
    )
    return HistoryLine(human_instant(first["at"]), "seen", text)


def _event_line(e: Mapping[str, Any], short: Mapping[str, str], was: str | None) -> HistoryLine:
    parts: list[str] = []
    if e.get("run_id") is not None:  # a run's event; a person's (acknowledged) names no block
        parts.append(f"run {_run(e['run_id'], short)}")
        if e.get("block_number") is not None:
            parts.append(f"block {human_number(e['block_number'])}")
    if e["event"] == "opened" or was is not None:
        parts.append(_amount_text(e.get("amount_display"), was))
    note = e.get("note")
    # An opened or seen event's note is the finding's detail, shown once above the history.
    if note and e["event"] not in ("opened", "seen"):
        parts.append(f"note: {note}")
    return HistoryLine(human_instant(e["at"]), e["event"], "  ".join(p for p in parts if p))


def run_ids_in(events: Sequence[Mapping[str, Any]], *more: str | None) -> dict[str, str]:
    """Short forms of the run ids a break's history names."""
    ids = [e["run_id"] for e in events if e.get("run_id")] + [m for m in more if m]
    return abbreviate_ids(ids)
