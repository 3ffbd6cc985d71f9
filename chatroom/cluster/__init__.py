"""Several servers, one room: the Redis side of ``--redis URL``.

Only imported when ``--redis`` is given, so a server on its own needs no
redis-py. ``ClusterBus`` is the room's bus (see ``chatroom.bus``): the room
hands it what concerns the other servers, and it hands back what they said.

What lives where in Redis (every key and channel starts ``chatroom:DB:``, so
one Redis serves one room per database; pub/sub channels ignore databases,
hence the number in their names too):

``history`` (stream)
    The last ``--history`` public lines, as rendered, trimmed with
    ``XADD MAXLEN ~``. Replayed on join on any server.
``room`` (channel)
    Public lines: messages, actions, announcements, join and leave notices.
    Each server publishes the lines its clients said, rendered once; *every*
    server, the sender's included, delivers them from its subscription. Redis
    runs one command at a time, so every server sees one order, and a
    server's lines leave on one connection from one thread (the writer, in
    the order the room posted them), so each sender's lines keep their order.
    One Lua script appends a batch of lines to ``history`` and publishes them
    with their stream ids in one step, so a line is in history if and only if
    it was sent to the room.
``node:NODE`` (channel)
    Private messages for the people on NODE. Published and forgotten: never
    in a key, never in history, and no server logs their text.
``control`` (channel), ``bans`` (set of ``"KIND VALUE"``)
    Bans for every server; each change is published so the others remove the
    banned person at once.
``name:KEY`` (string, expires)
    A claimed name (``protocol.names.name_key``): ``SET`` only if free (a Lua
    script), holding ``NODE/INCARNATION SERIAL``. The writer refreshes every
    claim of this server every third of ``--redis-ttl``; leaving deletes it
    only if it is still ours. A server that dies loses its names after
    ``--redis-ttl`` seconds, or at once when a server starts again under its
    node name (a replacement): that one first frees the names an earlier run
    of its node left.
``members:NODE`` (hash, expires), ``nodes`` (set), ``alive:NODE`` (string, expires)
    Who is in the room on each server, for ``/who``, the welcome line and the
    counts in join and leave notices, and which servers are alive: each
    refreshes its alive key, then its names, so a dead server's people vanish
    after ``--redis-ttl``, just before its names can be taken again.
``presence`` (channel), ``presence:seq`` (counter)
    Every change to a members hash, numbered, published by the script that
    makes it. Each server mirrors everyone elsewhere from it
    (``presence``), so asking who is elsewhere does not read the room.

The pieces:

* ``scripts`` — the keys, and the Lua scripts behind typed methods.
* ``writer`` — a thread that sends what the room queued (lines, private
  messages, presence, bans) in batches, one round trip per batch, and
  refreshes names and presence.
* ``asker`` — a thread that puts the questions other threads wait on to
  Redis, those of everyone waiting in one round trip.
* ``presence`` — the mirror of who is in the room on the other servers.
* ``subscriber`` — the subscription, read by the bus's *listener* thread,
  which hands what arrives to the room's entry points
  (``chatroom.bus.RoomEvents``) and to the mirror; it also notices outages
  and reconnects.
* ``connection`` — a thread's own connection, commands packed by hand.
* ``bus`` — ``ClusterBus``, the room's bus, tying them together.

Questions that need an answer (is this name free, who is elsewhere, where
is bob) are asked without the room's lock, and the caller waits for the
answer (the asker's thread asks), and no thread of the bus ever takes that
lock itself: it calls the room's entry points, and the room calls back the
bus's never-waiting methods (``part``, ``rejoin``, ``remember``) with its
lock held, which is how a separation or a reunion happens at one instant for
the rules and the bus.

Joining costs a constant number of round trips whatever the size of the
room: claiming the name, and asking the presence counter (``sync``). It was
N² for N people, when every join read every member of every other server.

When Redis is unreachable
-------------------------
The first failure anywhere (a dropped subscription, a failed or timed-out
command) makes this server *separate*: the listener stops, lines that were on
their way out are delivered here (once: lines the subscription had already
delivered are recognised by their sequence number), the people here are told
(``messages.SEPARATED``) and the log says so once. Until Redis is back, this
server is a room of its own: lines, notices and history are local, ``/who``
and counts show the people here, names are checked here only, private
messages reach only people here, and bans apply here at once and are kept to
be stored later. The listener tries again with a doubling delay (up to a
third of ``--redis-ttl``). Once connected it *reunites*: subscribes, stores
the bans made meanwhile, claims its names again (a name someone on another
server took meanwhile stays theirs: ours is told ``messages.NAME_LOST`` and
disconnected), rewrites its presence, reloads history from Redis (lines said
here during the outage are not replayed anywhere, and fall out of the replay
here too), tells the people here (``messages.REUNITED``) and logs it.
"""

from chatroom.cluster.bus import ClusterBus

__all__ = ["ClusterBus"]
