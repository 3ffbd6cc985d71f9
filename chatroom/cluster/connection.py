"""A thread's own connection to Redis: a batch of commands in one round trip, packed by hand.

The writer and the asker each have one. redis-py's pipeline object costs
several times more CPU per round trip than packing the commands on the
connection and reading the answers back, and a connection of one's own
needs no pool and no lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from chatroom.cluster.scripts import Command


class OwnConnection:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._conn: Any = None
        self._epoch = 0

    def round_trip(self, commands: Sequence[Command], epoch: int) -> list[Any]:
        """Each command's answer, or the ``ResponseError`` it got; raises if the connection fails.

        ``epoch`` counts separations (``writer.Health``): after one, the old
        socket is dropped, since it may lead to a Redis that is gone.
        """
        if self._conn is None:
            self._conn = self._client.connection_pool.make_connection()
        if self._epoch != epoch:
            self._conn.disconnect()
            self._epoch = epoch
        answers: list[Any] = []
        try:
            self._conn.send_packed_command(self._conn.pack_commands(commands))
            for _ in commands:
                try:
                    answers.append(self._conn.read_response())
                except ResponseError as error:  # read whole: the next answer follows
                    answers.append(error)
        except BaseException:
            self._conn.disconnect()  # whatever was unread would answer the next batch
            raise
        return answers

    def close(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
