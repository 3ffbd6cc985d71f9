"""One run of Client.py: the connection and the conversation, put together.

The conversation (``chatroom.client.conversation``) is touched by one thread
only, the session's: the terminal's event loop, or the main thread when
scripted. Other threads hand it work through ``post``: the receiving thread
what the server sends, the writer thread a failed send, the standard-input
thread (scripted) what was typed. Its effects are carried out in order, in
that thread: lines shown, lines queued for the writer, and at the end a
hang-up.

Two waits bound the life of a session: a chat server must answer within
``ANSWER_WAIT`` of the start (connecting included), or the client says none
did; and once ``/leave`` is sent, its goodbye is waited for at most
``LEAVE_WAIT``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

from chatroom.client.conversation import Conversation, Effect, Finish, Send, Show
from chatroom.client.link import Link
from chatroom.transport import Disconnected
from protocol.serverlines import NamePrompt, PasswordPrompt

#: Seconds for a chat server to answer: connecting, the TLS handshake and its first line.
ANSWER_WAIT = 5.0
#: Seconds to wait for the server's goodbye after asking to leave.
LEAVE_WAIT = 3.0

Job = Callable[[], None]


class Session:
    def __init__(self, link: Link, conversation: Conversation, tls: bool, deadline: float) -> None:
        """``deadline``: the ``time.monotonic()`` instant by which a chat server must have answered."""
        self.link = link
        self.conversation = conversation
        self.tls = tls
        self.deadline = deadline
        self.show: Callable[[Show], None] = lambda _shown: None
        self.on_change: Job = lambda: None  # something the input line shows may have changed
        self.on_finish: Job = lambda: None
        self._leave_by: float | None = None
        self._post: Callable[[Job], None] = lambda job: job()

    def start(self, post: Callable[[Job], None]) -> None:
        """Start reading and writing; ``post`` runs a job in the session's thread, from any thread."""
        self._post = post
        self.link.start_writing(lambda: post(self._send_failed))
        threading.Thread(target=self._receive, name="receive", daemon=True).start()

    @property
    def done(self) -> bool:
        return self.conversation.outcome is not None

    @property
    def leaving(self) -> bool:
        return self.conversation.leaving

    def leave_wait(self) -> float | None:
        """Seconds left to wait for the goodbye, or None while not leaving."""
        return None if self._leave_by is None else max(0.0, self._leave_by - time.monotonic())

    # --- in the session's thread ----------------------------------------------------

    def typed(self, text: str) -> None:
        self._apply(self.conversation.typed(text))

    def leave(self) -> None:
        self._apply(self.conversation.leave())

    def interrupt(self) -> None:
        self._apply(self.conversation.interrupt())

    def not_sent(self, text: str) -> None:
        self._apply(self.conversation.not_sent(text))

    def no_answer(self) -> None:
        """Connecting (or the TLS handshake) did not finish in time."""
        self._apply(self.conversation.unanswered(ANSWER_WAIT, self.tls))

    def _heard(self, batch: list[str | NamePrompt | PasswordPrompt]) -> None:
        for item in batch:
            if isinstance(item, NamePrompt):
                self._apply(self.conversation.asked_for_name())
            elif isinstance(item, PasswordPrompt):
                self._apply(self.conversation.asked_for_password())
            else:
                self._apply(self.conversation.hear(item))

    def _closed(self, lost: bool) -> None:
        self._apply(self.conversation.closed(lost))

    def _send_failed(self) -> None:
        self._apply(self.conversation.send_failed())

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Show):
                self.show(effect)
            elif isinstance(effect, Send):
                self.link.send(effect.text)
            elif isinstance(effect, Finish):
                self.link.hang_up()
                self.on_finish()
        if self.conversation.leaving and self._leave_by is None:
            self._leave_by = time.monotonic() + LEAVE_WAIT
        self.on_change()

    # --- the receiving thread ---------------------------------------------------------

    def _receive(self) -> None:
        try:
            for batch in self.link.receive(self.deadline):
                self._post(functools.partial(self._heard, batch))
        except TimeoutError:
            self._post(self.no_answer)
        except Disconnected as gone:
            self._post(functools.partial(self._closed, gone.lost))
        except OSError:  # reset, or TLS broken
            self._post(functools.partial(self._closed, True))
