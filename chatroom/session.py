"""One client's thread: read its lines, follow the join flow, carry out its commands.

This thread only ever *reads* its socket (writes go through the fan-out, see
``chatroom.delivery``), so it may block in ``recv`` for as long as the client
is idle: idle clients are never dropped. Only while a client is choosing a
name or waiting for the operator does it read with a deadline.
"""

from __future__ import annotations

import logging
import select
import socket
import socketserver
import ssl
import time
from typing import TYPE_CHECKING, NoReturn

from chatroom.config import Settings
from chatroom.delivery import Peer
from chatroom.room import Member, State, stamp
from chatroom.sockets import keepalive_options, set_options
from chatroom.tls import TlsLayer
from formatting import lines
from formatting.sanitize import clean
from protocol import commands, messages
from protocol.flood import TokenBucket
from protocol.framing import Event, LineReader, Overlong, encode_line

if TYPE_CHECKING:
    from chatroom.listener import ChatServer

log = logging.getLogger("chat")

#: Bytes read at once; allocated only while data is waiting (see _recv_raw).
RECV_SIZE = 65536
TLS_HANDSHAKE_TIMEOUT = 10.0  # a TLS client sends its hello at once; a plain one waits for our greeting
TLS_HANDSHAKE_RECORD = 0x16  # the first byte of every TLS client hello


class Disconnected(Exception):
    """The client is gone; the message says how, for the log."""

    def __init__(self, why: str, lost: bool = False) -> None:
        super().__init__(why)
        self.lost = lost  # the network failed, as opposed to the client closing


_TCP_CLOSE = 7  # tcp_info.tcpi_state once the kernel has given up on a connection


def timed_out(sock: socket.socket) -> bool:
    """Did TCP give up on this peer (keepalive or retransmissions unanswered)?

    When that happens ``recv`` sometimes reports a plain end of stream, as if
    the peer had closed; TCP_INFO tells the two apart (Linux only).
    """
    if not hasattr(socket, "TCP_INFO"):
        return False
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 4)
    except OSError:
        return False
    state, _ca_state, retransmits, probes = info[:4]
    return state == _TCP_CLOSE and bool(retransmits or probes)


def tune(sock: socket.socket, settings: Settings) -> None:
    """Low latency, dead-peer detection (``chatroom.sockets``) and a bounded kernel send buffer.

    Send buffer: left to autotuning, Linux lets one client that stops
    reading hold megabytes of kernel memory before our own outbox limit even
    sees it; a fixed buffer makes that limit mean what it says.
    """
    options = [(socket.SOL_SOCKET, "SO_SNDBUF", settings.sndbuf)] if settings.sndbuf else []
    options.append((socket.IPPROTO_TCP, "TCP_NODELAY", 1))
    set_options(sock, options + keepalive_options(settings.keepalive))


class Session(socketserver.BaseRequestHandler):
    """socketserver runs setup(), handle() and finish() in a thread of its own."""

    server: ChatServer
    request: socket.socket

    def setup(self) -> None:
        """Must not raise: socketserver skips finish() (and so the close) if it does."""
        settings = self.server.settings
        tune(self.request, settings)
        host, port = self.client_address[:2]
        self.peer = Peer(self.request, f"{host}:{port}", settings.max_outbox)
        self.server.room.fanout.add(self.peer)
        self.member = Member(self.peer, str(host), int(port))
        self.room = self.server.room
        self.reader = LineReader(settings.max_line)
        self.events: list[Event] = []  # from the last read, taken in order from index _next
        self._next = 0
        self._poller = select.poll()
        self._poller.register(self.request, select.POLLIN)
        self.said: list[str] = []  # rendered, not yet handed to the room (see _speak)
        self.tls: TlsLayer | None = None
        self.counted = False
        self.why = "closed by client"
        self.lost = False  # the connection failed, as opposed to being closed

    def handle(self) -> None:
        try:
            if self.server.tls_context is not None:
                self._tls_handshake(self.server.tls_context)
            refusal = self.room.connect(self.member)
            if refusal is not None:
                self.member.tell(lines.notice(None, refusal))
                return
            self.counted = True
            self.member.tell(lines.notice(None, messages.GREETING()))
            self._choose_name()
            self.room.request(self.member)
            self._converse()
        except Disconnected as gone:
            self.why, self.lost = str(gone), gone.lost
        except (ConnectionResetError, BrokenPipeError):
            self.why = "closed by client (reset)"
        except (OSError, ssl.SSLError) as error:
            self.lost = True
            self.why = f"connection lost: {error.__class__.__name__}"

    def finish(self) -> None:
        """Whatever happened, the member leaves and the socket goes back to the fan-out."""
        lost = self.lost or self.peer.drop_reason is not None
        notice = messages.DISCONNECTED if lost else messages.LEFT
        self.room.depart(self.member, notice, self.peer.drop_reason or self.why)
        if self.counted:
            self.room.disconnect(self.member)
        self.peer.release()

    # --- joining ----------------------------------------------------------------

    def _tls_handshake(self, context: ssl.SSLContext) -> None:
        """A TLS client speaks first, at once; anyone else is told, in plain text, to use --tls."""
        deadline = time.monotonic() + min(TLS_HANDSHAKE_TIMEOUT, self.server.settings.name_timeout)
        try:
            data = self._recv_raw(deadline)
        except TimeoutError:
            self._not_tls("no TLS handshake (a plain client?)")
        if data[0] != TLS_HANDSHAKE_RECORD:
            self._not_tls("not TLS")
        self.tls = TlsLayer(context)
        self.peer.transform = self.tls
        while True:
            try:
                done = self.tls.handshake(data)
            except ssl.SSLError as error:
                log.info("refused %s: TLS handshake failed: %s", self.peer.label, error.reason or error)
                raise Disconnected("TLS handshake failed", lost=True) from error
            self.peer.flush_transform()
            if done:
                return
            try:
                data = self._recv_raw(deadline)
            except TimeoutError:
                log.info("refused %s: TLS handshake timed out", self.peer.label)
                raise Disconnected("TLS handshake timed out", lost=True) from None

    def _not_tls(self, why: str) -> NoReturn:
        self.peer.send(encode_line(lines.notice(None, messages.NEEDS_TLS())))
        self.peer.hang_up()
        log.info("refused %s: %s", self.peer.label, why)
        self._drain()

    def _choose_name(self) -> None:
        """Ask until the client gives a usable name (or time runs out, which ends the session)."""
        deadline = time.monotonic() + self.server.settings.name_timeout
        prompt = messages.NAME_PROMPT.encode()
        while True:
            self.peer.send(prompt)
            try:
                event = self._next_event(deadline)
            except TimeoutError:
                self.room.refuse(self.member, messages.NAME_TIMEOUT, "no name given in time")
                self.why = "no name given in time"
                self._drain()
            if isinstance(event, Overlong):
                reason: str | None = messages.NAME_TOO_LONG.format(limit=self.server.settings.max_name)
            else:
                reason = self.room.claim(self.member, event.text)
            if reason is None:
                return
            self.member.tell(lines.error(None, messages.NAME_REJECTED(reason=reason)))

    # --- in the room --------------------------------------------------------------

    def _converse(self) -> None:
        settings = self.server.settings
        approval_deadline = time.monotonic() + settings.approval_timeout
        bucket = TokenBucket(settings.flood_rate, settings.flood_burst, time.monotonic())
        throttled = False
        while True:
            if self._next == len(self.events):
                self._speak()  # before waiting for more
            waiting = self.member.state is State.WAITING
            try:
                event = self._next_event(approval_deadline if waiting else None)
            except TimeoutError:
                self.room.refuse(self.member, messages.APPROVAL_TIMEOUT, "operator did not answer in time")
                continue
            # Flood control: past the burst, stop reading for a while. The
            # lines wait in the kernel's buffers, so none is lost or reordered.
            delay = bucket.delay(time.monotonic())
            if delay and not throttled:
                log.info("flood control: slowing down %s", self.member.who)
            throttled = bool(delay)
            if delay:
                self._speak()
                time.sleep(delay)
            state = self.member.state
            if state is State.WAITING:
                self.member.tell(lines.notice(None, messages.NOT_YET()))
            elif state is State.IN_ROOM and not self._obey(event):
                return

    def _obey(self, event: Event) -> bool:
        """Carry out one line; False when the member has left."""
        member, room = self.member, self.room
        if isinstance(event, Overlong):
            member.tell(lines.error(stamp(), messages.LINE_TOO_LONG(limit=event.limit)))
            return True
        command = commands.parse(clean(event.text))
        if isinstance(command, commands.Say | commands.Action):
            self.said.append(room.render(member, command))
            return True
        self._speak()  # whatever this command does comes after what was said before it
        if isinstance(command, commands.Private):
            room.private(member, command.recipient, command.text, command.color)
        elif isinstance(command, commands.Reply):
            if member.reply_to:
                room.private(member, member.reply_to, command.text, command.color)
            else:
                member.tell(lines.error(stamp(), messages.NO_ONE_TO_REPLY()))
        elif isinstance(command, commands.Rename):
            room.rename(member, command.name)
        elif isinstance(command, commands.Who):
            room.who(member)
        elif isinstance(command, commands.Whois):
            room.whois(member, command.name)
        elif isinstance(command, commands.Help):
            now, colors = stamp(), commands.color_list()
            member.tell(*(lines.notice(now, text.format(colors=colors)) for text in messages.HELP))
        elif isinstance(command, commands.Invalid):
            member.tell(lines.error(stamp(), command.error))
        elif isinstance(command, commands.Leave):
            farewell = lines.notice(stamp(), messages.GOODBYE(name=member.name))
            room.depart(member, messages.LEFT, "left with /leave", farewell)
            self.why = "left with /leave"
            return False
        return True

    def _speak(self) -> None:
        """Hand the room every line rendered since the last time, in one go.

        Lines that arrived together (a paste, or a flood) cost one lock, one
        history commit and one fan-out post between them instead of one each.
        """
        if self.said:
            self.room.speak(self.member, self.said)
            self.said = []

    # --- reading ------------------------------------------------------------------

    def _next_event(self, deadline: float | None) -> Event:
        while self._next == len(self.events):
            data = self._recv_raw(deadline)
            if self.tls is not None:
                data, goodbye = self.tls.decrypt(data)
                if self.tls.has_output:
                    self.peer.flush_transform()
                if goodbye and not data:
                    raise Disconnected("closed by client")
            self.events, self._next = self.reader.feed(data), 0
        self._next += 1
        return self.events[self._next - 1]

    def _recv_raw(self, deadline: float | None) -> bytes:
        # Wait in poll(), not in recv(): recv() allocates its buffer before it
        # blocks, and every idle client is blocked here, so that buffer would
        # be paid per client; this way it exists only while there is data.
        timeout = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        if not self._poller.poll(timeout):
            raise TimeoutError
        data = self.request.recv(RECV_SIZE)
        if not data:
            if timed_out(self.request):
                raise Disconnected("connection lost: timed out", lost=True)
            raise Disconnected("closed by client")
        return data

    def _drain(self) -> NoReturn:
        """Discard input until the hang-up we asked for closes the connection."""
        while True:
            self._recv_raw(None)
