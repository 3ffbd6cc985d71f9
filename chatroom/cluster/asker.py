"""The asker: one thread that puts the questions of every other thread to Redis, in batches.

Is this name free, who is elsewhere, where is bob: a client's thread asks
(``ClusterBus.claim``, ``elsewhere``, ``find``), without the room's lock, and
waits for the answer. The questions of everyone waiting go to Redis
together, in one round trip on the asker's own connection, and what an
answer needs done to it (parsing, waiting for the presence mirror) is done
here too.

Why not on the client's own thread: a client's thread lives as long as its
client, and every page of its stack and of its frames that a deep call
chain (redis-py's, then the mirror's) touches once stays resident until it
ends; at 10,000 clients that is megabytes. The client's thread only waits
on a lock. It also saves a pooled connection per thread asking at once, and
under a crowd of joins many round trips become one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatroom.cluster.connection import OwnConnection
from chatroom.cluster.scripts import Command
from chatroom.cluster.writer import Health

log = logging.getLogger("chat")


class _Question:
    __slots__ = ("answer", "command", "done", "error", "then")

    def __init__(self, command: Command, then: Callable[[Any], Any] | None) -> None:
        self.command = command
        self.then = then
        self.answer: Any = None
        self.error: RedisError | None = None
        self.done = threading.Lock()
        self.done.acquire()  # released by the asker once answered


class Asker(threading.Thread):
    def __init__(self, client: Any, health: Health, timeout: float) -> None:
        super().__init__(name="redis-asker", daemon=True)
        self._connection = OwnConnection(client)
        self._health = health
        self._timeout = timeout  # each answer's; a batch waits at most this per answer
        self._cond = threading.Condition()  # guards the two below
        self._questions: list[_Question] = []
        self._stopping = False

    def ask(self, command: Command, then: Callable[[Any], Any] | None = None) -> Any:
        """Redis's answer, or what ``then`` makes of it on the asker's thread.

        Raises ``RedisError`` if there is none (Redis failed, or took too long).
        """
        question = _Question(command, then)
        with self._cond:
            if self._stopping:
                raise RedisError("shutting down")
            self._questions.append(question)
            self._cond.notify()
        if not question.done.acquire(timeout=2 * self._timeout):
            raise RedisTimeoutError(f"no answer from Redis within {2 * self._timeout:g}s")
        if question.error is not None:
            raise question.error
        return question.answer

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self.is_alive():
            self.join(self._timeout)
        self._connection.close()

    def run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._questions or self._stopping)
                if self._stopping:
                    batch, self._questions = self._questions, []
                    for question in batch:
                        self._answer(question, None, RedisError("shutting down"))
                    return
                batch, self._questions = self._questions, []
            try:
                answers = self._connection.round_trip([q.command for q in batch], self._health.epoch)
            except Exception as error:
                if not isinstance(error, RedisError):
                    log.exception("unexpected error asking Redis")
                    error = RedisError(f"unexpected error: {error}")
                for question in batch:
                    self._answer(question, None, error)
                continue
            for question, answer in zip(batch, answers, strict=True):
                if isinstance(answer, ResponseError):
                    self._answer(question, None, answer)
                elif question.then is None:
                    self._answer(question, answer, None)
                else:
                    self._settle(question, answer)

    def _settle(self, question: _Question, answer: Any) -> None:
        then = question.then
        assert then is not None
        try:
            self._answer(question, then(answer), None)
        except Exception as error:
            log.exception("unexpected error reading an answer from Redis")
            self._answer(question, None, RedisError(f"unexpected error: {error}"))

    @staticmethod
    def _answer(question: _Question, answer: Any, error: RedisError | None) -> None:
        question.answer, question.error = answer, error
        question.done.release()
