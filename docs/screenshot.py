#!/usr/bin/env python3
"""Make docs/screenshot.png from a real session, the same way every time.

A real Server.py (interactive console) and two real Client.py run in
pseudo-terminals; the operator approves both at the console, they talk with
colour, bold, italic, strike and a private message, and each terminal's
screen, as the pyte emulator holds it, is drawn to one PNG with Pillow.

    python docs/screenshot.py [--out docs/screenshot.png]

Needs the test extra (pexpect, pyte) and Pillow (comes with matplotlib).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
COLUMNS, ROWS = 100, 15
CELL_W, CELL_H, PAD, GAP = 9, 18, 12, 10
FONT_SIZE = 15

# A dark terminal palette (xterm-like), by pyte's colour names.
PALETTE = {
    "black": "#2e3436", "red": "#cc0000", "green": "#4e9a06", "brown": "#c4a000",
    "blue": "#3465a4", "magenta": "#75507b", "cyan": "#06989a", "white": "#d3d7cf",
    "brightblack": "#555753", "brightred": "#ef2929", "brightgreen": "#8ae234",
    "brightbrown": "#fce94f", "brightblue": "#729fcf", "brightmagenta": "#ad7fa8",
    "brightcyan": "#34e2e2", "brightwhite": "#eeeeec",
}  # fmt: skip
FOREGROUND, BACKGROUND, TITLE_BG = "#d3d7cf", "#1e1e1e", "#3a3a3a"


class Pane:
    """One program in a pseudo-terminal, with its screen kept by pyte."""

    def __init__(self, title: str, argv: list[str], rows: int = ROWS) -> None:
        self.title = title
        self.rows = rows
        self.child = pexpect.spawn(
            sys.executable,
            argv,
            cwd=str(ROOT),
            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS)},
            dimensions=(rows, COLUMNS),
        )
        child = self.child

        class Answering(pyte.HistoryScreen):
            def write_process_input(self, data: str) -> None:
                child.send(data)  # answer cursor-position queries as a terminal would

        self.screen = Answering(COLUMNS, rows, history=500)
        self.stream = pyte.ByteStream(self.screen)

    def pump(self) -> None:
        while True:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.05))
            except pexpect.TIMEOUT:
                return
            except pexpect.EOF:
                return

    def text(self) -> str:
        self.pump()
        return "\n".join(self.screen.display)

    def wait(self, pattern: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found.group(0)
        raise SystemExit(f"{self.title}: never saw {pattern!r}:\n{self.text()}")

    def type(self, text: str, then: Callable[[], object] | None = None) -> None:
        self.child.send(text)
        if then is not None:
            then()


def session() -> list[Pane]:
    server = Pane("python3 Server.py", [str(ROOT / "Server.py"), "--port", "0", "--db", ":memory:"], rows=40)
    port = server.wait(r"listening on \S+:(\d+)").rsplit(":", 1)[1]
    client = [str(ROOT / "Client.py"), "--port", port, "--name"]
    alice = Pane("python3 Client.py --name alice", [*client, "alice"])
    server.wait(r"join request: alice")
    server.wait(r"operator> ")
    server.type("y\r")
    alice.wait(r"alice> ")
    bob = Pane("python3 Client.py --name bob", [*client, "bob"])
    server.wait(r"join request: bob")
    server.type("/approve bob\r")
    bob.wait(r"bob> ")
    server.wait(r"join bob")

    alice.type("hi bob! **bold**, __italic__ and ~~strike~~ all work\r")
    bob.wait(r"strike all work")
    bob.type("/color green **nice**, and colours too\r")
    alice.wait(r"colours too")
    alice.type("/private bob /color magenta psst: __this one is just for you__\r")
    bob.wait(r"PM from alice")
    bob.type("/me waves back\r")
    alice.wait(r"waves back")
    server.wait(r"waves back")
    server.type("/say welcome, both of you\r")
    bob.wait(r"Operator: welcome")
    alice.wait(r"Operator: welcome")
    server.wait(r"Operator: welcome")
    for pane in (server, alice, bob):
        pane.text()
    return [server, alice, bob]


def fonts() -> dict[tuple[bool, bool], ImageFont.FreeTypeFont]:
    import matplotlib

    folder = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
    names = {
        (False, False): "DejaVuSansMono.ttf",
        (True, False): "DejaVuSansMono-Bold.ttf",
        (False, True): "DejaVuSansMono-Oblique.ttf",
        (True, True): "DejaVuSansMono-BoldOblique.ttf",
    }
    return {style: ImageFont.truetype(str(folder / name), FONT_SIZE) for style, name in names.items()}


def shown_rows(pane: Pane) -> list[dict[int, pyte.screens.Char]]:
    """Scrollback and screen, with each run of blank rows (the prompt's reserved space) made one."""
    every = list(pane.screen.history.top) + [pane.screen.buffer[row] for row in range(pane.rows)]
    rows: list[dict[int, pyte.screens.Char]] = []
    for line in every:
        blank = not "".join(line[col].data for col in range(COLUMNS)).strip()
        if blank and (not rows or rows[-1] is BLANK):
            continue
        rows.append(BLANK if blank else line)
    while rows and rows[-1] is BLANK:
        rows.pop()
    return rows


BLANK: dict[int, pyte.screens.Char] = {}


def draw(panes: list[Pane], out: Path) -> None:
    font = fonts()
    pane_w = COLUMNS * CELL_W + 2 * PAD
    rows_of = {id(pane): shown_rows(pane) for pane in panes}
    heights = [(len(rows_of[id(pane)]) + 1) * CELL_H + 2 * PAD for pane in panes]
    image = Image.new("RGB", (pane_w, sum(heights) + GAP * (len(panes) - 1)), "#000000")
    pen = ImageDraw.Draw(image)
    top = 0
    for pane, pane_h in zip(panes, heights, strict=True):
        pen.rectangle([0, top, pane_w, top + pane_h], fill=BACKGROUND)
        pen.rectangle([0, top, pane_w, top + CELL_H + PAD], fill=TITLE_BG)
        pen.text((PAD, top + PAD // 2), pane.title, font=font[(True, False)], fill="#bbbbbb")
        for index, row in enumerate(rows_of[id(pane)]):
            y = top + PAD + (index + 1) * CELL_H
            for col in range(COLUMNS):
                if col not in row:
                    continue
                cell = row[col]
                fg = PALETTE.get(cell.fg, FOREGROUND)
                bg = PALETTE.get(cell.bg, BACKGROUND)
                if cell.reverse:
                    fg, bg = bg, fg
                x = PAD + col * CELL_W
                if bg != BACKGROUND:
                    pen.rectangle([x, y, x + CELL_W, y + CELL_H], fill=bg)
                if cell.data.strip():
                    pen.text((x, y), cell.data, font=font[(cell.bold, cell.italics)], fill=fg)
                if cell.strikethrough:
                    pen.line([x, y + CELL_H // 2 + 1, x + CELL_W, y + CELL_H // 2 + 1], fill=fg)
                if cell.underscore:
                    pen.line([x, y + CELL_H - 2, x + CELL_W, y + CELL_H - 2], fill=fg)
        top += pane_h + GAP
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    args = parser.parse_args()
    panes = session()
    try:
        draw(panes, args.out)
    finally:
        for pane in panes:
            pane.child.terminate(force=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
