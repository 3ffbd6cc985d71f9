"""The subscription: what the other servers say, read by the bus's listener thread."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import redis

#: How long a read waits before looking up (for trouble and shutdown).
TICK = 0.1


class Subscription:
    """Channels subscribed and confirmed, so nothing said from now on is missed."""

    def __init__(self, client: Any, channels: Mapping[str, Callable[[bytes], None]], timeout: float) -> None:
        self._handlers = {channel.encode(): handle for channel, handle in channels.items()}
        self._pubsub = client.pubsub()
        try:
            self._pubsub.subscribe(*channels)
            for _ in channels:
                message = self._pubsub.get_message(timeout=timeout)
                if message is None or message["type"] != "subscribe":
                    raise redis.exceptions.TimeoutError("no confirmation of the subscription")
        except BaseException:
            self._pubsub.close()
            raise

    def pump(self, running: Callable[[], bool]) -> None:
        """Hand each message to its channel's handler while ``running()``; raises when Redis fails."""
        while running():
            message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=TICK)
            if message is not None and message["type"] == "message":
                self._handlers[message["channel"]](message["data"])

    def close(self) -> None:
        self._pubsub.close()
