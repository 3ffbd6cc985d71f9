#!/usr/bin/env python3
"""Make docs/web_screenshot.png: the chat page in a real browser, in a real session.

A real Server.py with ``--web-port 0`` (its operator approves everyone by
typing ``y`` on its console, through a pipe), two friends on plain TCP
sockets, as nc would be, and headless Chromium showing the page for alice,
who joins after they have talked (so the history shows) and talks with them:
markup, a colour, an action, a private message and its reply, a mention, an
operator's announcement, and Tab completing a name.

    python docs/web_screenshot.py [--out docs/web_screenshot.png]

Needs selenium, Debian's chromium and chromium-driver, and for colour emoji
the fonts-noto-color-emoji package.
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
WAIT = 15.0
SIZE = (1200, 800)
SERVER_ARGS = ("--port", "0", "--web-port", "0", "--db", ":memory:")


class Operator:
    """Server.py with its console on pipes: its log is read as it comes, and it answers join requests."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(ROOT / "Server.py"), *SERVER_ARGS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.log: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = int(self.wait_for(r"listening on \S+:(\d+)"))
        self.url = self.wait_for(r"web page at (\S+)")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.changed:
                self.log.append(raw.decode())
                self.changed.notify_all()

    def wait_for(self, pattern: str) -> str:
        def found() -> re.Match[str] | None:
            return next((m for line in self.log if (m := re.search(pattern, line))), None)

        with self.changed:
            match = self.changed.wait_for(found, WAIT)
        if match is None:
            raise SystemExit(f"the server never logged {pattern!r}:\n{''.join(self.log)}")
        return match.group(1)

    def type(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def approve(self, name: str) -> None:
        self.wait_for(rf"join request: ({name}) from")
        self.type(f"/approve {name}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(WAIT)


class Friend:
    """Someone on a bare TCP connection, as with nc."""

    def __init__(self, operator: Operator, name: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", operator.port), timeout=WAIT)
        self.buffer = b""
        self.read_until(b"Your name: ")
        self.sock.sendall(name.encode() + b"\n")
        operator.approve(name)
        self.read_until(f"Welcome, {name}!".encode())

    def read_until(self, text: bytes) -> None:
        while text not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise SystemExit(f"connection closed before {text!r}")
            self.buffer += data
        self.buffer = self.buffer.split(text, 1)[1]

    def say(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")
        self.read_until(re.sub(r"[*_~]", "", text).split()[-1].encode())  # the room's echo: it was said


HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in HEADLESS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp()}")
    options.add_argument(f"--window-size={SIZE[0]},{SIZE[1]}")
    options.add_argument("--hide-scrollbars")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def session(out: Path) -> None:
    operator = Operator()
    driver = browser()
    try:
        bob = Friend(operator, "bob")
        carol = Friend(operator, "carol")
        bob.say("morning all! **croissants** in the kitchen 🥐")
        carol.say("/me waves from a terminal")
        driver.get(operator.url)
        driver.find_element(By.ID, "name").send_keys("alice", Keys.ENTER)
        wait = WebDriverWait(driver, WAIT, poll_frequency=0.05)
        wait.until(lambda d: d.find_element(By.ID, "waiting").is_displayed())
        operator.approve("alice")
        field = driver.find_element(By.ID, "input")
        wait.until(lambda _d: field.is_displayed())

        def shown(text: str) -> None:
            wait.until(lambda d: text in d.find_element(By.ID, "log").text)

        field.send_keys("hi both! I'm on the __web page__ now :wave:", Keys.ENTER)
        shown("web page")
        bob.say("/color green ~~tea~~ coffee, then")
        carol.say("/private alice lunch at one? __my treat__")
        shown("my treat")
        field.send_keys("/reply yes please :thumbs_up:", Keys.ENTER)
        shown("yes please")
        bob.say("alice: the names on the right are everyone here, terminals and browsers alike")
        operator.type("/say welcome to the web front door")
        shown("web front door")
        field.send_keys("/private ca", Keys.TAB, "see you at one")
        driver.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        operator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "web_screenshot.png")
    args = parser.parse_args()
    session(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
