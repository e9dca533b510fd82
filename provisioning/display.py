"""Progress on the technician's terminal: one line per board, and the summary table.

On a terminal the lines are redrawn in place (a bar for long writes); into a
pipe or a log each change of step is one plain line. Everything goes to
stderr, so stdout holds only results (tables, JSON).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from provisioning.boards_view import table

BAR = 20
REDRAW_S = 0.1


class BoardLine:
    """One board's line; implements the job's `Events`."""

    def __init__(self, display: Display, label: str) -> None:
        self.display = display
        self.label = label
        self.device_id = ""
        self.state = "waiting"
        self.fraction: float | None = None

    def device(self, device_id: str) -> None:
        self.device_id = device_id

    def step(self, name: str) -> None:
        self.state = name
        self.fraction = None
        self.display.changed(self, plain=True)

    def progress(self, done: int, total: int) -> None:
        self.fraction = done / total if total else 1.0
        self.display.changed(self, plain=False)

    def finish(self, text: str) -> None:
        self.state = text
        self.fraction = None
        self.display.changed(self, plain=True, force=True)

    def text(self) -> str:
        head = f"{self.label:<28.28} {self.device_id:<16.16} "
        if self.fraction is None:
            return head + self.state
        filled = int(self.fraction * BAR)
        bar = "#" * filled + "." * (BAR - filled)
        return head + f"{self.state:<10} [{bar}] {self.fraction * 100:3.0f}%"


class Display:
    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.lines: list[BoardLine] = []
        self.drawn = 0
        self.last = 0.0
        self.lock = threading.Lock()

    def line(self, label: str) -> BoardLine:
        with self.lock:
            line = BoardLine(self, label)
            self.lines.append(line)
            return line

    def changed(self, line: BoardLine, *, plain: bool, force: bool = False) -> None:
        with self.lock:
            if not self.live:
                if plain:
                    who = f"{line.device_id}: " if line.device_id else ""
                    self.stream.write(f"{line.label}: {who}{line.state}\n")
                    self.stream.flush()
                return
            now = time.monotonic()
            if not force and not plain and now - self.last < REDRAW_S:
                return
            self.last = now
            self._draw()

    def _draw(self) -> None:
        out = [f"\x1b[{self.drawn}F"] if self.drawn else []
        out += [f"\x1b[2K{line.text()}\n" for line in self.lines]
        self.stream.write("".join(out))
        self.stream.flush()
        self.drawn = len(self.lines)


def summary_table(rows: list[dict[str, str]]) -> str:
    head = ("PORT", "DEVICE", "BOARD", "STEPS DONE", "TIME", "RESULT")
    body = [(r["port"], r["device"], r["board"], r["steps"], r["time"], r["result"])
            for r in rows]
    return table([head, *body])
