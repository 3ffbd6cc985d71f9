"""The room's rules in-process: every transition, its effects, no sockets or threads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from chatroom.access import Access
from chatroom.bus import BanChange, Enter, Leave, Present, Publish, Registered, Release, SendPrivate
from chatroom.config import Settings
from chatroom.effects import (
    AllowListed,
    Attach,
    Broadcast,
    Detach,
    Effect,
    HangUp,
    Log,
    LogChat,
    QueueChanged,
    Remember,
    Tell,
    ToBus,
)
from chatroom.passwords import Registration
from chatroom.rules import Hold, Member, Now, RoomRules, State, network_of
from formatting.sanitize import strip_sgr
from protocol import commands, lines, messages
from protocol.commands import Action, Say

NOW = Now(wall=1_700_000_000.0, mono=500.0)
LATER = Now(wall=NOW.wall + 65, mono=NOW.mono + 65)


class Conn:
    """A member's connection as the rules see it: something effects name."""

    def __init__(self, label: str) -> None:
        self.label = label

    def tell(self, lines: Sequence[str]) -> None: ...
    def hang_up(self) -> None: ...
    def attach(self) -> None: ...
    def detach(self) -> None: ...

    def __repr__(self) -> str:
        return f"Conn({self.label})"


def rules(**settings: object) -> RoomRules:
    return RoomRules(replace(Settings(approve="ask"), **settings), Access())  # type: ignore[arg-type]


def member(host: str = "10.0.0.1", port: int = 4000) -> Member:
    return Member(Conn(f"{host}:{port}"), host, port, NOW.wall, NOW.mono)


def told(effects: Sequence[Effect], who: Member) -> list[str]:
    """The lines ``who`` was told, as text without styles."""
    return [
        strip_sgr(line) for e in effects if isinstance(e, Tell) and e.conn is who.conn for line in e.lines
    ]


def broadcast(effects: Sequence[Effect]) -> list[str]:
    return [strip_sgr(line) for e in effects if isinstance(e, Broadcast) for line in e.lines]


def logged(effects: Sequence[Effect]) -> list[str]:
    return [e.text for e in effects if isinstance(e, Log)]


def ops(effects: Sequence[Effect]) -> list[object]:
    return [e.op for e in effects if isinstance(e, ToBus)]


def named(room: RoomRules, name: str, host: str = "10.0.0.1", port: int = 4000) -> Member:
    m = member(host, port)
    assert room.connect(m) == [Log(f"connect {m.address} ({room.counts()})")]
    held = room.hold(m, name)
    assert isinstance(held, Hold)
    room.named(m, held)
    return m


def joined(room: RoomRules, name: str, host: str = "10.0.0.1", port: int = 4000) -> Member:
    m = named(room, name, host, port)
    room.admit(m, NOW, [], [])
    assert m.state is State.IN_ROOM
    return m


# --- connecting ----------------------------------------------------------------------------


def test_a_connection_is_counted_and_logged() -> None:
    room = rules()
    m = member()
    effects = room.connect(m)
    assert effects == [Log("connect 10.0.0.1:4000 (0 in room, 0 waiting, 1 connected)")]
    assert m.state is State.NAMING


@pytest.mark.parametrize(
    ("settings", "wording"),
    [
        ({"max_clients": 1}, messages.ROOM_FULL),
        ({"max_per_ip": 1, "exempt": ()}, messages.TOO_MANY_FROM_HOST),
    ],
)
def test_connections_over_a_limit_are_turned_away(
    settings: dict[str, object], wording: messages.Wording
) -> None:
    room = rules(**settings)
    room.connect(member())
    second = member(port=4001)
    effects = room.connect(second)
    assert second.state is State.GONE
    assert [wording.matches(line) for line in told(effects, second)] == [True]
    assert logged(effects)[0].startswith("refused 10.0.0.1:4001: ")


def test_an_exempt_address_is_not_limited_per_address() -> None:
    room = rules(max_per_ip=1, exempt=("10.0.0.1",))
    room.connect(member())
    assert room.connect(member(port=4001))[0].text.startswith("connect")  # type: ignore[union-attr]


def test_a_banned_address_is_turned_away_at_once() -> None:
    room = RoomRules(Settings(), Access(bans=[("address", "10.0.0.1")]))
    m = member()
    assert messages.BANNED.matches(told(room.connect(m), m)[0])


def test_an_ipv6_address_is_bracketed() -> None:
    assert member("::1", 5000).address == "[::1]:5000"


# --- names -----------------------------------------------------------------------------------


def test_a_bad_name_says_why() -> None:
    room = rules()
    m = member()
    room.connect(m)
    assert room.hold(m, "two words") == messages.NAME_HAS_SPACE


def test_a_name_held_here_is_taken_in_any_case_and_look_alike() -> None:
    room = rules()
    named(room, "alice")
    other = member(port=4001)
    room.connect(other)
    assert room.hold(other, "ALICE") == messages.NAME_TAKEN.format(name="ALICE")
    assert room.hold(other, "аlice") == messages.NAME_TAKEN.format(name="аlice")  # Cyrillic а


def test_a_name_another_server_holds_is_let_go_here() -> None:
    room = rules()
    m, other = member(), member(port=4001)
    room.connect(m)
    room.connect(other)
    held = room.hold(m, "bob")
    assert isinstance(held, Hold) and held.claim
    room.unhold(m, held)  # the bus said another server has it
    assert isinstance(room.hold(other, "bob"), Hold)


def test_a_banned_name_is_named_but_not_held_and_turned_away() -> None:
    room = RoomRules(Settings(), Access(bans=[("name", "troll")]))
    m = member()
    room.connect(m)
    held = room.hold(m, "Troll")
    assert held == Hold("Troll", "troll", claim=False)
    room.named(m, held)
    effects = room.request(m, NOW, [], [])
    assert told(effects, m) == ["", strip_sgr(messages.BANNED())]
    assert HangUp(m.conn) in effects and m.state is State.GONE


# --- asking the operator ---------------------------------------------------------------------


def test_a_newcomer_waits_for_the_operator() -> None:
    room = rules()
    m = named(room, "alice")
    effects = room.request(m, NOW, [], [])
    assert told(effects, m) == [messages.WAITING(name="alice")]
    assert QueueChanged() in effects and room.waiting() == [m]
    assert logged(effects) == ["waiting alice (10.0.0.1:4000) (0 in room, 1 waiting, 1 connected)"]


def test_a_full_queue_turns_newcomers_away() -> None:
    room = rules(max_pending=1)
    room.request(named(room, "alice"), NOW, [], [])
    bob = named(room, "bob", port=4001)
    effects = room.request(bob, NOW, [], [])
    assert told(effects, bob) == ["", messages.QUEUE_FULL()]
    assert bob.state is State.GONE


def test_one_address_and_one_network_hold_only_a_share_of_the_queue() -> None:
    room = rules(max_pending=16, max_pending_per_ip=2, max_pending_per_net=3)
    for i in range(2):
        room.request(named(room, f"a{i}", "10.1.1.1", 4000 + i), NOW, [], [])
    third = named(room, "a2", "10.1.1.1", 4002)
    assert told(room.request(third, NOW, [], []), third) == [
        "",
        messages.QUEUE_SHARE_FULL(where="address", limit=2),
    ]
    neighbour = named(room, "b", "10.1.1.2")
    room.request(neighbour, NOW, [], [])
    assert neighbour.state is State.WAITING
    same_net = named(room, "c", "10.1.1.3")
    assert messages.QUEUE_SHARE_FULL.match(told(room.request(same_net, NOW, [], []), same_net)[1]) == {
        "where": "network",
        "limit": "3",
    }
    elsewhere = named(room, "d", "10.1.2.1")
    room.request(elsewhere, NOW, [], [])
    assert elsewhere.state is State.WAITING


@pytest.mark.parametrize(
    ("host", "network"),
    [
        ("192.0.2.77", "192.0.2.0/24"),
        ("::ffff:192.0.2.77", "192.0.2.0/24"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("not an address", "not an address"),
    ],
)
def test_the_network_an_address_is_counted_in(host: str, network: str) -> None:
    assert network_of(host) == network


@pytest.mark.parametrize(
    ("approve", "allowed", "outcome"),
    [
        ("all", False, State.IN_ROOM),
        ("ask", True, State.IN_ROOM),
        ("allowlist", True, State.IN_ROOM),
        ("allowlist", False, State.GONE),
        ("ask", False, State.WAITING),
    ],
)
def test_the_approval_policy(approve: str, allowed: bool, outcome: State) -> None:
    room = RoomRules(Settings(approve=approve), Access(allowed=["alice"] if allowed else []))
    m = named(room, "alice")
    assert room.admits_at_once(m) is (outcome is State.IN_ROOM)
    room.request(m, NOW, [], [])
    assert m.state is outcome


def test_admitting_welcomes_replays_history_and_announces() -> None:
    room = rules()
    bob = joined(room, "bob", port=4001)
    alice = named(room, "alice")
    room.request(alice, NOW, [], [])
    elsewhere = [Present("carol", "b", "10.0.0.9:1", NOW.wall - 9, NOW.wall - 8)]
    effects = room.admit(alice, NOW, elsewhere, ["[11:00:00] <bob> earlier"])
    assert told(effects, alice) == [
        "[" + NOW.stamp + "] " + messages.WELCOME(name="alice", count=3, names="carol, bob, alice"),
        "[" + NOW.stamp + "] " + messages.HISTORY_START(count=1),
        "[11:00:00] <bob> earlier",
        "[" + NOW.stamp + "] " + messages.HISTORY_END(),
    ]
    assert broadcast(effects) == ["[" + NOW.stamp + "] " + messages.JOINED(name="alice", count=3)]
    assert Attach(alice.conn) in effects and QueueChanged() in effects
    assert ops(effects) == [Enter("alice", "alice", "10.0.0.1:4000", NOW.wall, NOW.wall)]
    assert effects.index(Attach(alice.conn)) < next(
        i for i, e in enumerate(effects) if isinstance(e, Broadcast)
    )
    assert [m.name for m in room.members()] == ["bob", "alice"]
    assert bob.state is State.IN_ROOM


def test_admitting_twice_or_after_leaving_does_nothing() -> None:
    room = rules()
    m = joined(room, "alice")
    assert room.admit(m, NOW, [], []) == []
    assert room.refuse(m, messages.REFUSED, "late") == []


def test_joins_are_not_announced_to_a_crowd() -> None:
    room = rules(announce_limit=1)
    joined(room, "alice")
    bob = named(room, "bob", port=4001)
    assert broadcast(room.admit(bob, NOW, [], [])) == []


def test_the_welcome_names_at_most_fifty() -> None:
    room = rules()
    for i in range(60):
        joined(room, f"p{i}", host=f"10.0.1.{i}")
    m = named(room, "last")
    welcome = told(room.admit(m, NOW, [], []), m)[0]
    assert welcome.endswith("p49 and 11 more. Type /help for commands.")


def test_refusing_a_waiting_member_hangs_up() -> None:
    room = rules()
    m = named(room, "alice")
    room.request(m, NOW, [], [])
    effects = room.refuse(m, messages.REFUSED, "refused by the operator")
    assert told(effects, m) == [messages.REFUSED()]
    assert HangUp(m.conn) in effects and QueueChanged() in effects
    assert logged(effects) == ["refused alice (10.0.0.1:4000): refused by the operator"]
    assert room.waiting() == []


# --- leaving ----------------------------------------------------------------------------------


def test_leaving_the_room_is_announced_with_the_count() -> None:
    room = rules()
    joined(room, "bob", port=4001)
    alice = joined(room, "alice")
    effects = room.leave(alice, LATER, elsewhere=2)
    assert told(effects, alice) == ["[" + LATER.stamp + "] " + messages.GOODBYE(name="alice")]
    assert broadcast(effects) == ["[" + LATER.stamp + "] " + messages.LEFT(name="alice", count=3)]
    assert Detach(alice.conn) in effects and ops(effects) == [Leave("alice")]
    assert room.leave(alice, LATER, 0) == []  # gone already: one winner


def test_giving_up_while_waiting_changes_the_queue() -> None:
    room = rules()
    m = named(room, "alice")
    room.request(m, NOW, [], [])
    effects = room.depart(m, NOW, 0, messages.LEFT, "closed by client")
    assert QueueChanged() in effects and broadcast(effects) == []
    assert logged(effects)[0].startswith("gave up waiting alice")


def test_disconnecting_frees_the_name_everywhere() -> None:
    room = rules()
    m = joined(room, "alice")
    room.depart(m, NOW, 0, messages.LEFT, "closed")
    effects = room.disconnect(m)
    assert ops(effects) == [Release("alice")]
    newcomer = member(port=4001)
    room.connect(newcomer)
    assert isinstance(room.hold(newcomer, "alice"), Hold)


def test_a_kick_removes_and_hangs_up() -> None:
    room = rules()
    joined(room, "bob", port=4001)
    alice = joined(room, "alice")
    effects = room.remove(alice, NOW, 0, "spam")
    assert told(effects, alice) == ["[" + NOW.stamp + "] " + messages.KICKED(reason=": spam")]
    assert broadcast(effects) == ["[" + NOW.stamp + "] " + messages.KICKED_NOTICE(name="alice", count=1)]
    assert effects[-1] == HangUp(alice.conn)


def test_removing_someone_waiting_refuses_them() -> None:
    room = rules()
    m = named(room, "alice")
    room.request(m, NOW, [], [])
    assert told(room.remove(m, NOW, 0, "banned"), m) == [messages.BANNED()]


# --- bans and the allow-list ------------------------------------------------------------------


def test_banning_a_name_bans_its_address_and_removes_it() -> None:
    room = rules(exempt=())
    alice = joined(room, "alice")
    done, effects = room.ban("Alice", NOW, 0)
    assert done == ["banned name Alice", "banned address 10.0.0.1", "removed alice (10.0.0.1:4000)"]
    assert ops(effects)[:2] == [BanChange("name", "alice", True), BanChange("address", "10.0.0.1", True)]
    assert HangUp(alice.conn) in effects and alice.state is State.GONE
    assert room.ban("alice", NOW, 0)[0] == []  # nothing new


def test_banning_an_exempt_address_s_person_leaves_the_address_alone() -> None:
    room = rules(exempt=("10.0.0.1",))
    joined(room, "alice")
    done, _effects = room.ban("alice", NOW, 0)
    assert done == ["banned name alice", "removed alice (10.0.0.1:4000)"]


def test_banning_an_address_removes_everyone_from_it() -> None:
    room = rules()
    a, b = joined(room, "a"), joined(room, "b", port=4001)
    stranger = member(port=4002)
    room.connect(stranger)  # still naming
    done, _effects = room.ban("10.0.0.1", NOW, 0)
    assert done[0] == "banned address 10.0.0.1"
    assert {a.state, b.state, stranger.state} == {State.GONE}


def test_unbanning() -> None:
    room = RoomRules(Settings(), Access(bans=[("name", "troll")]))
    assert room.unban("TROLL") == (["unbanned name troll"], [ToBus(BanChange("name", "troll", False))])
    assert room.unban("troll") == ([], [])


def test_a_ban_from_another_server_is_applied_here() -> None:
    room = rules(exempt=("10.0.0.1",))
    troll = joined(room, "troll")
    effects = room.ban_arrived("name", "troll", True, "b", NOW, 0)
    assert logged(effects)[0] == "banned name troll (on b)"
    assert "removed troll (10.0.0.1:4000) (banned on b)" in logged(effects)
    assert troll.state is State.GONE
    assert room.ban_arrived("name", "troll", True, "b", NOW, 0) == []  # already known


def test_bans_stored_while_apart_are_enforced() -> None:
    room = rules(exempt=("10.0.0.1",))
    troll = joined(room, "troll")
    effects = room.bans_stored([("name", "troll"), ("bogus", "x")], NOW, 0)
    assert "removed troll (10.0.0.1:4000) (banned elsewhere while apart)" in logged(effects)
    assert troll.state is State.GONE


def test_allowing_a_waiting_name_hands_them_over() -> None:
    room = rules()
    m = named(room, "alice")
    room.request(m, NOW, [], [])
    added, effects, waiting = room.allow("ALICE")
    assert added and effects == [AllowListed("ALICE")] and waiting is m
    assert room.allow("alice")[0] is False


# --- renaming ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        ("alice", messages.NAME_UNCHANGED),
        ("troll", messages.NAME_BANNED),
        ("no way", messages.NAME_HAS_SPACE),
    ],
)
def test_a_rename_is_checked_like_a_first_name(new: str, reason: str) -> None:
    room = RoomRules(Settings(), Access(bans=[("name", "troll")]))
    m = joined(room, "alice")
    assert room.rename_refusal(m, new) == reason


def test_a_rename_under_allowlist_needs_a_listed_name() -> None:
    room = RoomRules(Settings(approve="allowlist"), Access(allowed=["alice"]))
    m = joined(room, "alice")
    assert room.rename_refusal(m, "bob") == messages.NAME_NOT_ALLOWED


def test_renaming_keeps_the_order_and_tells_the_bus() -> None:
    room = rules()
    alice = joined(room, "alice")
    joined(room, "bob", port=4001)
    assert room.rename_refusal(alice, "alicia") is None
    held = room.hold(alice, "alicia")
    assert isinstance(held, Hold)
    effects = room.renamed(alice, held, NOW, 0)
    assert broadcast(effects) == ["[" + NOW.stamp + "] " + messages.RENAMED(old="alice", new="alicia")]
    assert ops(effects) == [
        Leave("alice"),
        Release("alice"),
        Enter("alicia", "alicia", alice.address, NOW.wall, NOW.wall),
    ]
    assert [m.name for m in room.members()] == ["alicia", "bob"]
    assert room.find("ALICIA") is alice and room.find("alice") is None


def test_a_new_spelling_of_the_same_name_is_not_claimed_again() -> None:
    room = rules()
    alice = joined(room, "alice")
    held = room.hold(alice, "Alice")
    assert isinstance(held, Hold) and held.key == alice.key
    assert ops(room.renamed(alice, held, NOW, 0)) == [
        Leave("alice"),
        Enter("alice", "Alice", alice.address, NOW.wall, NOW.wall),
    ]


def test_a_rename_of_someone_who_left_meanwhile_gives_the_new_name_back() -> None:
    room = rules()
    alice = joined(room, "alice")
    held = room.hold(alice, "alicia")
    assert isinstance(held, Hold)
    room.leave(alice, NOW, 0)
    assert room.renamed(alice, held, NOW, 0) == [ToBus(Release("alicia"))]


def test_a_rename_in_a_crowd_is_told_only_to_the_one_renamed() -> None:
    room = rules(announce_limit=1)
    alice = joined(room, "alice")
    joined(room, "bob", port=4001)
    held = room.hold(alice, "alicia")
    assert isinstance(held, Hold)
    effects = room.renamed(alice, held, NOW, 0)
    assert broadcast(effects) == [] and told(effects, alice)[0].endswith("alice is now known as alicia")


# --- talking -------------------------------------------------------------------------------------


def test_speaking_stores_then_delivers_then_logs() -> None:
    room = rules()
    alice = joined(room, "alice")
    line = RoomRules.render("alice", Say("hi **there**"), NOW.stamp)
    effects = room.speak(alice, [line], LATER)
    assert [type(e) for e in effects] == [Remember, Broadcast, LogChat]
    assert broadcast(effects) == ["[" + NOW.stamp + "] <alice> hi there"]
    assert alice.last_active == LATER.mono


def test_speaking_in_a_shared_room_goes_through_the_bus() -> None:
    room = rules(log_chat=False)
    room.shared = True
    alice = joined(room, "alice")
    line = RoomRules.render("alice", Action("waves"), NOW.stamp)
    assert room.speak(alice, [line], NOW) == [ToBus(Publish((line,)))]


def test_only_members_in_the_room_speak() -> None:
    room = rules()
    m = named(room, "alice")
    assert room.speak(m, ["x"], NOW) == []


def test_an_announcement_is_public_and_logged() -> None:
    effects = rules().announce("maintenance at 5", NOW)
    assert broadcast(effects) == ["[" + NOW.stamp + "] " + messages.ANNOUNCEMENT(text="maintenance at 5")]
    assert logged(effects) == [messages.ANNOUNCEMENT(text="maintenance at 5")]


def test_commands_answered_to_the_sender_alone() -> None:
    room = rules()
    alice = joined(room, "alice")
    help_lines = told(room.obey(alice, commands.Help(), NOW), alice)
    assert help_lines[0].endswith(messages.HELP[0]) and messages.HELP_END.matches(help_lines[-1])
    assert told(room.obey(alice, commands.Invalid("*** nope"), NOW), alice)[0].endswith("*** nope")
    assert messages.NO_ONE_TO_REPLY.matches(told(room.obey(alice, commands.Reply("hi"), NOW), alice)[0])
    assert room.obey(alice, commands.Empty(), NOW) == []


def test_a_private_message_reaches_its_recipient_alone() -> None:
    room = rules()
    alice, bob = joined(room, "alice"), joined(room, "bob", port=4001)
    effects = room.private(alice, "BOB", "psst", "green", NOW, None)
    assert told(effects, bob) == ["[" + NOW.stamp + "] [PM from alice] psst"]
    assert told(effects, alice) == ["[" + NOW.stamp + "] [PM to bob] psst"]
    assert broadcast(effects) == [] and bob.reply_to == "alice"
    assert logged(effects) == ["private message alice -> bob (text not logged)"]


def test_a_private_message_to_another_server_goes_through_the_bus() -> None:
    room = rules()
    alice = joined(room, "alice")
    carol = Present("carol", "b", "10.0.0.9:1", 0.0, 0.0)
    effects = room.private(alice, "carol", "psst", None, NOW, carol)
    (op,) = ops(effects)
    assert isinstance(op, SendPrivate) and (op.node, op.key, op.sender) == ("b", "carol", "alice")
    assert logged(effects) == ["private message alice -> carol on b (text not logged)"]


@pytest.mark.parametrize(("to", "wording"), [("alice", messages.PM_SELF), ("nobody", messages.NO_SUCH_USER)])
def test_private_messages_that_cannot_go(to: str, wording: messages.Wording) -> None:
    room = rules()
    alice = joined(room, "alice")
    assert [wording.matches(line) for line in told(room.private(alice, to, "x", None, NOW, None), alice)] == [
        True
    ]


def test_a_private_message_from_another_server() -> None:
    room = rules()
    bob = joined(room, "bob")
    effects = room.private_arrived("bob", "carol", "[12:00:00] [PM from carol] hi")
    assert told(effects, bob) == ["[12:00:00] [PM from carol] hi"] and bob.reply_to == "carol"
    assert room.private_arrived("nobody", "carol", "x") == []


def test_who_lists_everyone_in_the_order_they_came_and_splits_long_lists() -> None:
    room = rules()
    asker = joined(room, "asker")
    for i in range(60):
        joined(room, f"person{i:02d}", host=f"10.0.1.{i}")
    elsewhere = [Present("early", "b", "x", 0.0, NOW.wall - 100)]
    first, *more = told(room.who(asker, NOW, elsewhere), asker)
    head = messages.WHO.match(first)
    assert head is not None and head["count"] == "62" and more
    names = head["names"].split(", ")
    for line in more:
        fields = messages.WHO_MORE.match(line)
        assert fields is not None
        names += fields["names"].split(", ")
    assert names[:3] == ["early", "asker", "person00"] and len(names) == 62


def test_whois_here_elsewhere_and_nowhere() -> None:
    room = rules()
    asker = joined(room, "asker")
    here = told(room.whois(asker, "ASKER", LATER, None), asker)[0]
    assert here.endswith(messages.WHOIS(name="asker", since=NOW.stamp, ago="1m05s", idle="1m05s"))
    carol = Present("carol", "b", "x", 0.0, NOW.wall)
    there = told(room.whois(asker, "carol", LATER, carol), asker)[0]
    assert there.endswith(messages.WHOIS_ELSEWHERE(name="carol", since=NOW.stamp, ago="1m05s"))
    assert messages.NO_SUCH_USER.matches(told(room.whois(asker, "x", NOW, None), asker)[0])


# --- the other servers ---------------------------------------------------------------------------


def test_lines_from_the_other_servers_are_delivered_and_new_ones_kept() -> None:
    room = rules()
    assert room.lines_arrived(["a", "b"], ["b"]) == [Remember(("b",)), Broadcast(("a", "b"))]
    assert room.lines_arrived(["a"], []) == [Broadcast(("a",))]


def test_separation_delivers_stranded_lines_and_says_so() -> None:
    room = rules()
    room.shared = True
    joined(room, "alice")
    effects = room.separated(["[12:00:00] <alice> lost"], NOW)
    assert not room.shared
    assert effects[:2] == [Remember(("[12:00:00] <alice> lost",)), Broadcast(("[12:00:00] <alice> lost",))]
    assert broadcast(effects)[-1].endswith(messages.SEPARATED(count=1))


def test_reuniting_says_so_except_the_first_time() -> None:
    room = rules()
    joined(room, "alice")
    assert room.reunited(3, NOW, announce=False) == [] and room.shared
    assert broadcast(room.reunited(3, NOW))[0].endswith(messages.REUNITED(count=4))


def test_names_taken_elsewhere_while_apart_send_their_holders_away() -> None:
    room = rules()
    alice = joined(room, "alice")
    bob = named(room, "bob", port=4001)
    room.request(bob, NOW, [], [])
    effects = room.names_lost(["alice", "bob", "nobody"], NOW, 0)
    assert messages.NAME_LOST.matches(told(effects, alice)[0])
    assert told(effects, bob) == [messages.NAME_LOST(name="bob")]
    assert HangUp(alice.conn) in effects and HangUp(bob.conn) in effects


# --- shutting down -----------------------------------------------------------------------------------


def test_closing_tells_everyone_and_returns_farewells_for_the_other_servers() -> None:
    room = rules()
    alice, bob = joined(room, "alice"), joined(room, "bob", port=4001)
    naming = member(port=4002)
    room.connect(naming)
    farewells, effects = room.close(NOW, elsewhere=5)
    assert told(effects, naming) == ["", "[" + NOW.stamp + "] " + messages.SHUTTING_DOWN()]
    assert told(effects, alice) == ["[" + NOW.stamp + "] " + messages.SHUTTING_DOWN()]
    assert {HangUp(alice.conn), HangUp(bob.conn), HangUp(naming.conn)} <= set(effects)
    assert [strip_sgr(f) for f in farewells] == [
        "[" + NOW.stamp + "] " + messages.DISCONNECTED(name="alice", count=6),
        "[" + NOW.stamp + "] " + messages.DISCONNECTED(name="bob", count=5),
    ]
    assert room.members() == []


# --- registered names, away, catch-up, search ---------------------------------------------------


def registered_room(**settings: object) -> RoomRules:
    room = rules(**settings)
    room.registered["alice"] = Registration("alice", "SECRET", seen=NOW.wall - 3600)
    return room


def test_a_registered_name_is_held_and_then_wants_its_password() -> None:
    room = registered_room()
    m = member()
    room.connect(m)
    held = room.hold(m, "ALICE")
    assert isinstance(held, Hold) and held.registered
    assert room.secret("alice") == "SECRET"


def test_the_right_password_lets_the_owner_in_without_asking_and_replays_what_it_missed() -> None:
    room = registered_room()
    alice = named(room, "alice")
    assert room.password_right(alice)[0] == Log("password accepted for alice (10.0.0.1:4000)")
    assert room.admits_at_once(alice)
    missed = ["[11:00:00] <bob> while you were out"]
    effects = room.request(alice, NOW, [], ["ignored"], missed)
    assert alice.state is State.IN_ROOM and QueueChanged() in effects
    assert "approved (registered name) alice (10.0.0.1:4000)" in logged(effects)
    welcome = told(effects, alice)
    since = lines.stamp(NOW.wall - 3600)
    assert welcome[1:] == [
        f"[{NOW.stamp}] " + messages.CATCH_UP_START(since=since, count=1),
        "[11:00:00] <bob> while you were out",
        f"[{NOW.stamp}] " + messages.CATCH_UP_END(),
    ]
    assert told(room.request(named(room, "x", port=9), NOW, [], [], []), alice) == []


def test_nothing_missed_is_said_so() -> None:
    room = registered_room()
    alice = named(room, "alice")
    room.password_right(alice)
    welcome = told(room.request(alice, NOW, [], ["old"], []), alice)
    assert welcome[1] == f"[{NOW.stamp}] " + messages.NOTHING_MISSED(since=lines.stamp(NOW.wall - 3600))


def test_an_operator_can_still_be_asked_about_registered_names() -> None:
    room = registered_room(ask_registered=True)
    alice = named(room, "alice")
    room.password_right(alice)
    room.request(alice, NOW, [], [])
    assert alice.state is State.WAITING


def test_wrong_passwords_are_answered_ever_later_from_one_address() -> None:
    room = registered_room()
    alice = named(room, "alice")
    delays = [room.password_wrong(alice, NOW, tries)[0] for tries in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    _delay, effects = room.password_wrong(alice, NOW, 1)
    assert told(effects, alice) == [messages.PASSWORD_WRONG(name="alice")]
    assert "PASS" not in " ".join(logged(effects))
    later = Now(NOW.wall + 4000, NOW.mono + 4000)  # an hour later the address starts afresh
    assert room.password_wrong(alice, later, 1)[0] == 1.0
    elsewhere = named(room, "x", host="10.9.9.9")
    assert room.password_wrong(elsewhere, NOW, 1)[0] == 1.0


def test_leaving_remembers_when_for_the_next_catch_up() -> None:
    room = registered_room()
    alice = named(room, "alice")
    room.password_right(alice)
    room.admit(alice, NOW, [], [])
    effects = room.leave(alice, LATER, 0)
    (op,) = [o for o in ops(effects) if isinstance(o, Registered)]
    assert op == Registered("alice", Registration("alice", "SECRET", seen=LATER.wall))


def test_registering_a_name_and_changing_and_dropping_its_password() -> None:
    room = rules()
    bob = joined(room, "bob")
    assert room.register_refusal(bob, "short") == messages.PASSWORD_TOO_SHORT.format(limit=6)
    assert room.register_refusal(bob, "long enough") is None
    effects = room.register(bob, "HASH", NOW)
    assert told(effects, bob) == [f"[{NOW.stamp}] " + messages.REGISTERED(name="bob")]
    assert ops(effects) == [Registered("bob", Registration("bob", "HASH"))] and bob.owner
    assert room.register_refusal(bob, "long enough") == messages.ALREADY_REGISTERED.format(name="bob")
    assert room.password_refusal(bob, "another one") is None
    assert ops(room.change_password(bob, "HASH2", NOW)) == [Registered("bob", Registration("bob", "HASH2"))]
    assert ops(room.unregister(bob, NOW)) == [Registered("bob", None)] and not bob.owner
    assert messages.REGISTER_REJECTED.matches(told(room.unregister(bob, NOW), bob)[0])


def test_nobody_else_may_take_a_registered_name_even_with_nick() -> None:
    room = registered_room()
    carol = joined(room, "carol")
    assert room.rename_refusal(carol, "Alice") == messages.NAME_REGISTERED
    other = named(room, "x", port=5)
    assert room.password_refusal(other, "whatever1") == messages.NOT_YOURS.format(name="x")


def test_the_operator_lets_a_registered_name_go() -> None:
    room = registered_room()
    assert room.unregister_name("ALICE") == (["unregistered alice"], [ToBus(Registered("alice", None))])
    assert room.unregister_name("alice") == ([], [])


def test_registrations_from_other_servers() -> None:
    room = rules()
    assert logged(room.registration_arrived("dave", Registration("dave", "H"))) == [
        "registered dave (on another server)"
    ]
    assert room.rename_refusal(joined(room, "x"), "dave") == messages.NAME_REGISTERED
    assert logged(room.registration_arrived("dave", None)) == ["unregistered dave (on another server)"]


def test_joins_and_leaves_are_not_history() -> None:
    room = rules()
    joined(room, "bob")
    alice = named(room, "alice", port=2)
    assert not any(isinstance(e, Remember) for e in room.admit(alice, NOW, [], []))
    assert not any(isinstance(e, Remember) for e in room.leave(alice, NOW, 0))
    room.shared = True
    carol = named(room, "carol", port=3)
    (publish,) = [op for op in ops(room.admit(carol, NOW, [], [])) if isinstance(op, Publish)]
    assert publish.remember is False


def test_away_shows_in_who_whois_and_answers_private_messages() -> None:
    room = rules()
    alice, bob = joined(room, "alice"), joined(room, "bob", port=2)
    effects = room.away(bob, "lunch, then a walk", NOW)
    assert told(effects, bob) == [f"[{NOW.stamp}] " + messages.AWAY(reason=": lunch, then a walk")]
    assert ops(effects) == [Enter("bob", "bob", bob.address, NOW.wall, NOW.wall, "lunch, then a walk")]
    who = told(room.who(alice, NOW, [Present("carol", "b", "x", 0.0, NOW.wall + 1, "")]), alice)
    assert who == [
        f"[{NOW.stamp}] " + messages.WHO(count=3, names="alice, bob (away: lunch, then a walk), carol (away)")
    ]
    assert told(room.whois(alice, "bob", NOW, None), alice)[1].endswith("bob is away: lunch, then a walk.")
    pm = told(room.private(alice, "bob", "hi", None, NOW, None), alice)
    assert pm[1] == f"[{NOW.stamp}] " + messages.IS_AWAY(name="bob", reason=": lunch, then a walk")
    room.back(bob, NOW)
    assert len(told(room.private(alice, "bob", "hi", None, NOW, None), alice)) == 1


def test_search_answers() -> None:
    room = rules()
    alice = joined(room, "alice")
    found = told(room.searched(alice, "cake", ["[10:00:00] <bob> cake?"], NOW), alice)
    assert found == [
        f"[{NOW.stamp}] " + messages.SEARCH_START(words="'cake'", count=1),
        "[10:00:00] <bob> cake?",
        f"[{NOW.stamp}] " + messages.SEARCH_END(),
    ]
    assert messages.SEARCH_NOTHING.matches(told(room.searched(alice, "pie", [], NOW), alice)[0])
    assert messages.SEARCH_UNAVAILABLE.matches(
        told(room.searched(alice, "pie", "history is paused", NOW), alice)[0]
    )
