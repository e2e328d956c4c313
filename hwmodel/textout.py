"""Tables for ``hwmodel``'s text output: one small interface, two renderers.

* :class:`PlainConsole` writes tables whole, never wrapped, in the box characters rich
  uses, without importing rich: what a file (``--out``) or a pipe gets.
* :func:`rich_console` wraps a rich Console (a terminal: its width, colours): the same
  tables through rich, which shrinks columns to fit the terminal.

Cells and lines are plain text in both: nothing is read as markup, so user-given names
(``[red]net.yaml``) print as they are.
"""

from __future__ import annotations

import sys


class PlainTable:
    """A table of text cells: columns with a header and a justification, rows of cells."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.columns: list[tuple[str, str]] = []
        self.rows: list[list[str]] = []

    def add_column(self, header: str, justify: str = "left") -> None:
        self.columns.append((str(header), justify))

    def add_row(self, *cells) -> None:
        self.rows.append([str(cell) for cell in cells])

    def lines(self) -> list[str]:
        widths = [max([len(header)] + [len(row[i]) for row in self.rows if i < len(row)])
                  for i, (header, _) in enumerate(self.columns)]

        def cells(values, justify=None):
            out = []
            for i, width in enumerate(widths):
                value = values[i] if i < len(values) else ""
                how = justify or self.columns[i][1]
                out.append(value.rjust(width) if how == "right" else value.ljust(width))
            return out

        def rule(left, fill, join, right):
            return left + join.join(fill * (w + 2) for w in widths) + right

        body = [rule("┏", "━", "┳", "┓"),
                "┃" + "┃".join(f" {c} " for c in cells([h for h, _ in self.columns])) + "┃",
                rule("┡", "━", "╇", "┩")]
        body += ["│" + "│".join(f" {c} " for c in cells(row)) + "│" for row in self.rows]
        body.append(rule("└", "─", "┴", "┘"))
        if self.title:
            width = len(body[0])
            body.insert(0, self.title.center(width).rstrip() if len(self.title) < width else self.title)
        return body


class PlainConsole:
    """Writes text lines and :class:`PlainTable` s to ``file`` (default stdout), unwrapped."""

    plain = True

    def __init__(self, file=None) -> None:
        self.file = file if file is not None else sys.stdout

    def table(self, title: str = "") -> PlainTable:
        return PlainTable(title)

    def print(self, item="") -> None:
        lines = item.lines() if isinstance(item, PlainTable) else [str(item)]
        self.file.write("".join(line.rstrip() + "\n" for line in lines))


class _RichTable:
    """PlainTable's interface over a rich Table (cells as plain text, never markup)."""

    def __init__(self, title: str) -> None:
        from rich.table import Table
        from rich.text import Text

        self._text = Text
        self.table = Table(title=Text(title) if title else None)

    def add_column(self, header: str, justify: str = "left") -> None:
        self.table.add_column(self._text(str(header)), justify=justify)

    def add_row(self, *cells) -> None:
        self.table.add_row(*(self._text(str(cell)) for cell in cells))


class RichConsole:
    """A rich Console behind PlainConsole's interface (terminal output)."""

    plain = False

    def __init__(self, console) -> None:
        self.console = console

    def table(self, title: str = "") -> _RichTable:
        return _RichTable(title)

    def print(self, item="") -> None:
        if isinstance(item, _RichTable):
            self.console.print(item.table)
        else:
            self.console.print(str(item), markup=False, highlight=False)


def rich_console(**kwargs) -> RichConsole:
    from rich.console import Console

    return RichConsole(Console(**kwargs))
