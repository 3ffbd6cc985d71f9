"""Client.py on a terminal (prompt_toolkit's input line, lines printed above it), or scripted.

On a terminal, the session runs in prompt_toolkit's event loop: the
receiving thread posts what the server sends there, so the conversation, the
printing and the input line are all one thread's. That is what makes the end
clean: a goodbye shown just before the conversation finishes is printed
before the input line goes away, and the input line is never redrawn over a
line half printed.

Rules:

* Lines are printed with ``run_in_terminal`` (the input line is erased, the
  lines written, the input line drawn again); lines that arrive while a print
  is pending go with it, so a burst costs one redraw.
* The terminal is never asked where the cursor is (a CPR, ``ESC [6n``): its
  answer comes back as input, and one that comes after the client has gone
  (late, as over ssh) would be typed into the shell. Without it
  prompt_toolkit does not know how many rows are below the cursor, so the
  input line grows downwards when Tab opens a menu; that is all it costs.
* Lines typed before the operator lets you in are shown above the input line,
  marked ``(queued)``, until they are sent. Text still in the input line when
  the conversation ends (the server shut down) is shown as not sent.
* When standard input is not a terminal, each line read is a line typed, and
  the end of input leaves; output is the server's lines, unwrapped, no bell.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.application import run_in_terminal
from prompt_toolkit.completion import DynamicCompleter
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.output import create_output
from prompt_toolkit.output.vt100 import Vt100_Output
from prompt_toolkit.styles import Style

from chatroom.client.completion import ChatCompleter
from chatroom.client.conversation import Conversation, Phase, Show
from chatroom.client.session import Job, Session
from formatting import layout, shortcodes
from formatting.sanitize import strip_sgr
from protocol import messages

#: What the client adds to the server's /help, and to --help.
KEYS = (
    ("Tab", "complete a name, command, colour or :emoji_name:; again for the next one"),
    ("Up, Down", "the lines you typed before; Ctrl-R searches them"),
    ("Ctrl-D", "leave the room, like /leave (on an empty line)"),
    ("Ctrl-C", "leave at once: the connection just closes, without /leave"),
)
KEY_WIDTH = 12
EXTRAS = (
    "/ignore NAME hides NAME's messages in this client (/unignore NAME; /ignore alone lists them).",
    ":thumbs_up: and other emoji names are sent as the emoji itself.",
    "/register and /password alone ask for the password without showing it, twice.",
    "Your name in someone else's message is highlighted and rings the bell, as does a private message.",
)
#: Rows (label, text) below the server's /help.
CLIENT_HELP = (
    ("Keys in Client.py:", ""),
    *((f"  {key:<{KEY_WIDTH}}", meaning) for key, meaning in KEYS),
    *(("", extra) for extra in EXTRAS),
)
QUEUED = "(queued) "
PROMPT_STYLE = Style.from_dict({"queued": "italic"})


class Printer:
    """Fits the lines the conversation shows to what the reader sees, and writes them."""

    def __init__(
        self,
        write: Callable[[str], None],
        color: bool,
        bell: bool = False,
        emoji_names: bool = False,
        columns: Callable[[], int] | None = None,
    ) -> None:
        self.write = write
        self.color = color
        self.bell = bell
        self.emoji_names = emoji_names
        self.columns = columns  # the terminal's width, when rows should be wrapped to it

    def show(self, shown: Show) -> None:
        text = shown.text
        if self.emoji_names:
            text = shortcodes.to_shortcodes(text)
        if shown.mention is not None:
            text = layout.highlight(text, shown.mention, shown.prefix)
        if not self.color:
            text = strip_sgr(text)
        rows = [text] if self.columns is None else layout.hanging_wrap(text, self.columns(), shown.prefix)
        bell = "\a" if self.bell and shown.alert else ""
        self.write(bell + "\n".join(rows) + "\n")


def write_to(out: TextIO) -> Callable[[str], None]:
    def write(text: str) -> None:
        out.write(text)
        out.flush()

    return write


class AbovePrompt:
    """Writes text above prompt_toolkit's input line, in order. Only from the event loop's thread."""

    def __init__(self, out: TextIO) -> None:
        self._write = write_to(out)
        self._waiting: list[str] = []
        self._last: asyncio.Future[None] | None = None

    def write(self, text: str) -> None:
        self._waiting.append(text)
        if len(self._waiting) == 1:  # else a print is pending, and will take this too
            self._last = asyncio.ensure_future(run_in_terminal(self._flush, in_executor=False))

    def _flush(self) -> None:
        text, self._waiting = "".join(self._waiting), []
        self._write(text)

    async def drain(self) -> None:
        """Wait until everything written so far is on the screen (prints run in order)."""
        if self._last is not None:
            await self._last


class Discreet(History):
    """The lines typed before, but never a password (typed while ``hidden()``)."""

    def __init__(self, kept: History, hidden: Callable[[], bool]) -> None:
        super().__init__()
        self._kept = kept
        self._hidden = hidden

    def load_history_strings(self) -> Iterable[str]:
        return self._kept.load_history_strings()

    def append_string(self, string: str) -> None:
        if not self._hidden():
            super().append_string(string)

    def store_string(self, string: str) -> None:
        self._kept.store_string(string)


class Interrupted(Exception):
    """Ctrl-C at the input line."""


class Finished(Exception):
    """The conversation ended while the input line was up."""


def prompt_text(conversation: Conversation) -> StyleAndTextTuples:
    """The input line's prompt, below the lines that wait to be sent."""
    rows: StyleAndTextTuples = [("class:queued", f"{QUEUED}{text}\n") for text in conversation.queued]
    if conversation.phase is Phase.NAMING:
        prompt = messages.NAME_PROMPT
    elif conversation.phase is Phase.PASSWORD:
        prompt = messages.PASSWORD_PROMPT
    elif conversation.secret_prompt is not None:
        prompt = conversation.secret_prompt
    elif conversation.phase is Phase.IN_ROOM:
        prompt = f"{conversation.name}> "
    elif conversation.phase is Phase.WAITING:
        prompt = "(waiting for the operator) "
    else:
        prompt = "> "
    return [*rows, ("", prompt)]


def completing(conversation: Conversation) -> bool:
    """Does Tab complete now? Not at the name prompt, and never in a password."""
    return conversation.phase is not Phase.NAMING and not conversation.hidden


def run_terminal(session: Session, printer: Printer, history: History, emoji_glyphs: bool) -> None:
    """A prompt_toolkit input line; what the server says is printed above it.

    What was typed is erased once sent, as in irssi: the room's echo of it is
    the record, so each line shows once.
    """
    conversation = session.conversation
    output = create_output()
    if isinstance(output, Vt100_Output):
        output.enable_cpr = False  # see the module's docstring
    completer = ChatCompleter(conversation.others, emoji_glyphs)
    prompt: PromptSession[str] = PromptSession(
        lambda: prompt_text(conversation),
        history=Discreet(history, lambda: conversation.hidden),
        is_password=Condition(lambda: conversation.hidden),
        completer=DynamicCompleter(
            lambda: None if conversation.phase is Phase.NAMING or conversation.hidden else completer
        ),
        complete_while_typing=False,  # a menu only on Tab, not at every keystroke
        erase_when_done=True,
        interrupt_exception=Interrupted,  # a KeyboardInterrupt would escape the task as a traceback
        output=output,
        style=PROMPT_STYLE,
    )
    app = prompt.app

    def end_prompt() -> None:
        """Take the input line away once the conversation is over, or the user is leaving."""
        if (session.done or session.leaving) and app.is_running and app.future and not app.future.done():
            if session.done:
                session.not_sent(prompt.default_buffer.text)
            app.exit(exception=Finished())

    async def converse() -> None:
        loop = asyncio.get_running_loop()
        above = AbovePrompt(sys.stdout)
        finished = asyncio.Event()

        def on_finish() -> None:
            finished.set()
            end_prompt()

        printer.write = above.write
        session.show = printer.show
        session.on_change = app.invalidate
        session.on_finish = on_finish
        session.start(functools.partial(_post, loop))
        while not (session.done or session.leaving):
            try:
                text = await prompt.prompt_async(pre_run=end_prompt)
            except Finished:
                break
            except EOFError:
                session.leave()
            except Interrupted:
                session.interrupt()
            else:
                session.typed(text)
        if not session.done:  # leaving: let the goodbye arrive
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), session.leave_wait())
        await above.drain()

    try:
        asyncio.run(converse())
    finally:  # the event loop is gone: print directly from now on (a Ctrl-C outside the input line)
        printer.write = write_to(sys.stdout)
        session.on_change = session.on_finish = lambda: None


def _post(loop: asyncio.AbstractEventLoop, job: Job) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: the client is on its way out
        loop.call_soon_threadsafe(job)


def run_plain(session: Session, printer: Printer, stdin: TextIO) -> None:
    """Standard input is a pipe or file: one line, one message; its end leaves."""
    inbox: queue.Queue[Job] = queue.Queue()
    session.show = printer.show
    session.start(inbox.put)

    def feed() -> None:
        for raw in stdin.buffer:
            inbox.put(functools.partial(session.typed, raw.decode("utf-8", "replace").rstrip("\r\n")))
        inbox.put(session.leave)

    threading.Thread(target=feed, name="stdin", daemon=True).start()
    while not session.done:
        try:
            job = inbox.get(timeout=session.leave_wait())
        except queue.Empty:
            return  # no goodbye in time: we left all the same
        job()


def open_history(path: str | None) -> History:
    """The lines typed before: from ``path`` if given (which must be writable), else fresh."""
    if path is None:
        return InMemoryHistory()
    with open(path, "a", encoding="utf-8"):
        pass
    return FileHistory(path)


def terminal_width(fd: int) -> Callable[[], int]:
    """The width of the terminal on ``fd``, asked afresh for each line, as it may be resized.

    The terminal itself is asked, as prompt_toolkit asks it for the input line: a
    ``COLUMNS`` variable (which shutil prefers) can be stale or inherited.
    """

    def width() -> int:
        try:
            return os.get_terminal_size(fd).columns
        except OSError:
            return 80

    return width


def use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")
