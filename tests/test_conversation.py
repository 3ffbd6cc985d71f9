"""The client's conversation, in-process: server lines (from the server's own renderers) and
typed lines in, what to show, send and how it ends out."""

from __future__ import annotations

from collections.abc import Callable

from chatroom.client.conversation import (
    Conversation,
    Effect,
    ExitCode,
    Finish,
    Outcome,
    Phase,
    Send,
    Show,
)
from formatting.sanitize import strip_sgr
from protocol import lines, messages

SERVER = "127.0.0.1:5555"
GREETING = lines.notice(None, messages.GREETING())


def welcome(name: str = "bob", names: str = "alice, bob, carol") -> str:
    return lines.notice("12:00:00", messages.WELCOME(name=name, count=len(names.split(", ")), names=names))


def waiting(name: str = "bob") -> str:
    return lines.notice(None, messages.WAITING(name=name))


def new(name: str | None = "bob", interactive: bool = True) -> Conversation:
    return Conversation(SERVER, name, interactive, stamp=lambda: "12:00:00", client_help=[("Keys:", "")])


def sent(effects: list[Effect]) -> list[str]:
    return [effect.text for effect in effects if isinstance(effect, Send)]


def shown(effects: list[Effect]) -> list[str]:
    return [strip_sgr(effect.text) for effect in effects if isinstance(effect, Show)]


def finished(effects: list[Effect]) -> Outcome | None:
    ends = [effect.outcome for effect in effects if isinstance(effect, Finish)]
    assert len(ends) <= 1 and (not ends or effects[-1] == Finish(ends[0]))  # always the last effect
    return ends[0] if ends else None


def hear(conversation: Conversation, *server_lines: str) -> list[Effect]:
    return [effect for line in server_lines for effect in conversation.hear(line)]


def in_room(name: str = "bob", **options: bool) -> Conversation:
    conversation = new(name, **options)
    hear(conversation, GREETING)
    assert conversation.asked_for_name() == [Send(name)]
    hear(conversation, waiting(name), welcome(name))
    assert conversation.phase is Phase.IN_ROOM
    return conversation


def room_lines(conversation: Conversation, *server_lines: str) -> list[Show]:
    return [effect for effect in hear(conversation, *server_lines) if isinstance(effect, Show)]


# --- joining ------------------------------------------------------------------------


def test_joining_with_a_name_given() -> None:
    conversation = new("bob")
    assert conversation.phase is Phase.CONNECTING
    assert shown(conversation.hear(GREETING)) == ["*** Welcome to the chat room."]
    assert conversation.asked_for_name() == [Send("bob")]
    phases = [conversation.phase]  # connecting until the server answers the name
    hear(conversation, waiting())
    phases.append(conversation.phase)
    effects = conversation.hear(welcome())
    phases.append(conversation.phase)
    assert phases == [Phase.CONNECTING, Phase.WAITING, Phase.IN_ROOM]
    assert shown(effects) == [strip_sgr(welcome())] and sent(effects) == []
    assert conversation.names == {"alice", "bob", "carol"}


def test_a_refused_name_is_asked_for_again_on_a_terminal() -> None:
    conversation = new("taken")
    hear(conversation, GREETING)
    conversation.asked_for_name()
    rejected = lines.error(None, messages.NAME_REJECTED(reason="'taken' is already taken"))
    assert shown(conversation.hear(rejected)) == [strip_sgr(rejected)]
    assert conversation.asked_for_name() == []
    phases = [conversation.phase]
    assert conversation.typed(":smile:") == [Send(":smile:")]  # a name is sent as typed
    phases.append(conversation.phase)
    assert phases == [Phase.NAMING, Phase.CONNECTING]
    hear(conversation, waiting(":smile:"))
    assert conversation.name == ":smile:"


def test_a_refused_name_ends_a_script() -> None:
    conversation = new("taken", interactive=False)
    hear(conversation, GREETING)
    conversation.asked_for_name()
    assert finished(conversation.asked_for_name()) == Outcome(ExitCode.REFUSED, "the name was not accepted")
    assert conversation.phase is Phase.DONE


def test_no_name_given_on_a_terminal_asks() -> None:
    conversation = new(None)
    hear(conversation, GREETING)
    assert conversation.asked_for_name() == [] and conversation.phase is Phase.NAMING


def test_not_let_in() -> None:
    conversation = new()
    hear(conversation, GREETING, waiting())
    effects = conversation.hear(lines.notice(None, messages.REFUSED()))
    assert shown(effects) == [strip_sgr(messages.REFUSED())]
    assert finished(effects) == Outcome(ExitCode.REFUSED, "not let in")


def test_refused_at_the_door() -> None:
    effects = new().hear(lines.notice(None, messages.ROOM_FULL(limit=5)))
    assert finished(effects) == Outcome(ExitCode.REFUSED, "not let in")


def test_a_tls_server_says_so() -> None:
    effects = new().hear(lines.notice(None, messages.NEEDS_TLS()))
    assert finished(effects) == Outcome(ExitCode.LOST, "the server speaks TLS: add --tls")


# --- not a chat server -------------------------------------------------------------


def test_a_first_line_no_chat_server_sends_means_another_service() -> None:
    outcome = finished(new().hear("SSH-2.0-OpenSSH_9.6\x1b[2J"))
    assert outcome is not None and outcome.code is ExitCode.LOST
    assert outcome.why == f"{SERVER} is not a chat server (it said 'SSH-2.0-OpenSSH_9.6')"


def test_once_a_chat_server_has_answered_any_line_is_just_shown() -> None:
    conversation = new()
    hear(conversation, GREETING)
    assert shown(conversation.hear("SSH-2.0-OpenSSH_9.6")) == ["SSH-2.0-OpenSSH_9.6"]
    assert conversation.phase is Phase.CONNECTING


def test_no_answer_at_all() -> None:
    assert finished(new().unanswered(5, tls=False)) == Outcome(
        ExitCode.LOST, f"no chat server answered at {SERVER} within 5 s (one that speaks TLS needs --tls)"
    )
    assert finished(new().unanswered(5, tls=True)) == Outcome(
        ExitCode.LOST, f"no chat server answered at {SERVER} within 5 s"
    )


def test_closed_without_a_word() -> None:
    assert finished(new().closed(lost=False)) == Outcome(
        ExitCode.LOST, f"{SERVER} closed the connection without a word"
    )


# --- lines typed before we are in -----------------------------------------------------


def test_lines_typed_while_waiting_are_queued_and_sent_once_in() -> None:
    conversation = new()
    hear(conversation, GREETING)
    assert conversation.typed("early :thumbs_up:") == []  # before the name is even answered
    conversation.asked_for_name()
    hear(conversation, waiting())
    assert conversation.typed("second") == []
    queued = [conversation.queued]
    effects = conversation.hear(welcome())
    queued.append(conversation.queued)
    assert queued == [("early 👍", "second"), ()]
    assert sent(effects) == ["early 👍", "second"]
    assert isinstance(effects[0], Show)  # the welcome shows first


def test_lines_never_sent_are_shown_as_not_sent() -> None:
    conversation = new()
    hear(conversation, GREETING, waiting())
    conversation.typed("hello?")
    effects = conversation.hear(lines.notice(None, messages.APPROVAL_TIMEOUT()))
    assert shown(effects)[1:] == ["[12:00:00] *** Not sent: hello?"]
    assert finished(effects) == Outcome(ExitCode.REFUSED, "not let in")


def test_leaving_while_waiting_on_a_terminal_leaves_at_once() -> None:
    leaves: list[Callable[[Conversation], list[Effect]]] = [Conversation.leave, lambda c: c.typed("/quit")]
    for leave in leaves:
        conversation = new()
        hear(conversation, GREETING, waiting())
        conversation.typed("never mind")
        effects = leave(conversation)
        assert sent(effects) == [] and shown(effects) == ["[12:00:00] *** Not sent: never mind"]
        assert finished(effects) == Outcome(ExitCode.LEFT, "you left before you were let in")


def test_a_script_that_ends_while_waiting_says_its_lines_once_in() -> None:
    conversation = new(interactive=False)
    hear(conversation, GREETING, waiting())
    conversation.typed("typed while waiting")
    assert conversation.leave() == []
    assert conversation.typed("after the end") == []  # nothing comes after leaving
    effects = conversation.hear(welcome())
    assert sent(effects) == ["typed while waiting", "/leave"] and conversation.leaving
    goodbye = conversation.hear(lines.notice("12:00:01", messages.GOODBYE(name="bob")))
    assert finished(goodbye) == Outcome(ExitCode.LEFT, "you left the room")


# --- in the room -----------------------------------------------------------------------


def test_lines_typed_in_the_room_are_sent_with_emoji() -> None:
    conversation = in_room()
    assert conversation.typed(":thumbs_up: great") == [Send("👍 great")]
    assert conversation.typed("/private alice hi") == [Send("/private alice hi")]


def test_someone_elses_mention_is_flagged_for_highlight_and_bell() -> None:
    [line] = room_lines(in_room(), lines.message("12:00:01", "alice", "hey Bob, look"))
    assert line.mention == "bob" and line.alert


def test_your_own_words_and_other_names_are_no_mention() -> None:
    shown_lines = room_lines(
        in_room(),
        lines.message("12:00:01", "bob", "bob here"),
        lines.action("12:00:02", "bob", "waves at bob"),
        lines.message("12:00:03", "alice", "bobby and bob.smith"),
    )
    assert not any(line.mention or line.alert for line in shown_lines)


def test_actions_and_private_messages_alert() -> None:
    shown_lines = room_lines(
        in_room(),
        lines.action("12:00:01", "alice", "pokes bob"),
        lines.private("12:00:02", messages.PM_FROM(name="carol"), "psst"),
        lines.private("12:00:03", messages.PM_TO(name="carol"), "bob says hi"),
    )
    assert [(line.mention, line.alert) for line in shown_lines] == [
        ("bob", True),
        (None, True),
        (None, False),
    ]


def test_history_is_highlighted_but_rings_no_bell() -> None:
    shown_lines = room_lines(
        in_room(),
        lines.notice("12:00:00", messages.HISTORY_START(count=1)),
        lines.message("11:00:00", "alice", "bob, are you there?"),
        lines.notice("12:00:00", messages.HISTORY_END()),
        lines.message("12:00:01", "alice", "bob, now?"),
    )
    assert [(line.mention, line.alert) for line in shown_lines[1:4:2]] == [("bob", False), ("bob", True)]


def test_names_follow_joins_leaves_renames_and_who() -> None:
    conversation = in_room()
    hear(
        conversation,
        lines.notice("12:00:01", messages.JOINED(name="dave", count=4)),
        lines.notice("12:00:02", messages.LEFT(name="alice", count=3)),
        lines.notice("12:00:03", messages.DISCONNECTED(name="carol", count=2)),
        lines.notice("12:00:04", messages.RENAMED(old="dave", new="david")),
    )
    assert conversation.names == {"bob", "david"}
    hear(conversation, lines.notice("12:00:05", messages.WHO(count=3, names="bob, erin")))
    hear(conversation, lines.notice("12:00:05", messages.WHO_MORE(names="frank")))
    assert conversation.names == {"bob", "erin", "frank"}
    hear(conversation, lines.notice("12:00:06", messages.KICKED_NOTICE(name="erin", count=2)))
    assert conversation.others() == ["frank"]


def test_after_a_rename_your_new_name_is_the_one_mentioned_and_completed() -> None:
    conversation = in_room()
    shown_lines = room_lines(
        conversation,
        lines.notice("12:00:01", messages.RENAMED(old="bob", new="bobby")),
        lines.notice("12:00:02", messages.RENAMED(old="carol", new="caro")),
        lines.message("12:00:03", "alice", "bobby: welcome back"),
    )
    assert conversation.name == "bobby" and shown_lines[2].mention == "bobby"
    assert sorted(conversation.others()) == ["alice", "caro"]


def test_history_says_nothing_about_who_is_here_now() -> None:
    conversation = in_room()
    hear(
        conversation,
        lines.notice("12:00:00", messages.HISTORY_START(count=3)),
        lines.notice("11:00:00", messages.RENAMED(old="bob", new="robert")),  # an earlier bob
        lines.notice("11:00:00", messages.LEFT(name="alice", count=2)),
        lines.notice("11:00:00", messages.JOINED(name="ghost", count=3)),
        lines.notice("12:00:00", messages.HISTORY_END()),
    )
    assert conversation.name == "bob" and conversation.names == {"alice", "bob", "carol"}


def test_completion_offers_the_latest_speakers_first_and_never_you() -> None:
    conversation = in_room()
    hear(
        conversation,
        lines.notice("12:00:01", messages.JOINED(name="dave", count=4)),
        lines.message("12:00:02", "carol", "hi"),
        lines.message("12:00:03", "bob", "hi"),
    )
    assert conversation.others() == ["carol", "alice", "dave"]


def test_wrapped_rows_line_up_after_the_label() -> None:
    shown_lines = room_lines(
        in_room(),
        lines.message("12:00:01", "alice", "hi"),
        lines.action("12:00:01", "alice", "waves"),
        lines.private("12:00:01", messages.PM_TO(name="carol"), "psst"),
        lines.notice("12:00:01", messages.JOINED(name="dave", count=4)),
    )
    labels = [strip_sgr(line.text)[: line.prefix] for line in shown_lines]
    assert labels == [
        "[12:00:01] <alice> ",
        "[12:00:01] * alice ",
        "[12:00:01] [PM to carol] ",
        "[12:00:01] *** ",
    ]


def test_help_ends_with_the_clients_own_rows() -> None:
    help_end = lines.notice("12:00:09", messages.HELP_END())
    assert shown(in_room().hear(help_end)) == [strip_sgr(help_end), "[12:00:09] *** Keys:"]


def test_ignore_hides_someone_in_this_client_only() -> None:
    conversation = in_room()
    effects = conversation.typed("/ignore Carol") + conversation.typed("/ignore bob")
    assert sent(effects) == []  # the server never hears of it
    notices = shown(effects)
    assert messages.IGNORING.matches(notices[0]) and messages.IGNORE_SELF.matches(notices[1])
    shown_lines = shown(
        hear(
            conversation,
            lines.message("12:00:01", "carol", "spam"),
            lines.action("12:00:02", "CAROL", "spams"),
            lines.private("12:00:03", messages.PM_FROM(name="carol"), "psst"),
            lines.message("12:00:04", "alice", "hello"),
            lines.notice("12:00:05", messages.RENAMED(old="carol", new="caro")),
            lines.message("12:00:06", "caro", "still spam"),
        )
    )
    assert not any("spam" in text or "psst" in text for text in shown_lines)
    assert any("<alice> hello" in text for text in shown_lines) and "caro" in conversation.names
    assert messages.IGNORED_LIST.match(shown(conversation.typed("/ignore"))[0]) == {
        "count": "1",
        "names": "caro",
    }
    assert messages.UNIGNORED.matches(shown(conversation.typed("/unignore caro"))[0])
    assert messages.NOT_IGNORED.matches(shown(conversation.typed("/unignore dave"))[0])


def test_ignore_works_while_waiting_too() -> None:
    conversation = new()
    hear(conversation, GREETING, waiting())
    assert messages.IGNORING.matches(shown(conversation.typed("/ignore carol"))[0])
    assert conversation.queued == ()


# --- the end ----------------------------------------------------------------------------


def test_leave_waits_for_the_goodbye() -> None:
    conversation = in_room()
    assert conversation.leave() == [Send("/leave")] and conversation.leaving
    assert conversation.leave() == [] and conversation.typed("more") == []
    goodbye = lines.notice("12:00:01", messages.GOODBYE(name="bob"))
    effects = conversation.hear(goodbye)
    assert shown(effects) == [strip_sgr(goodbye)]
    assert finished(effects) == Outcome(ExitCode.LEFT, "you left the room")
    assert conversation.closed(lost=False) == []  # the close after a goodbye changes nothing


def test_typing_a_leave_command_is_leaving() -> None:
    conversation = in_room()
    assert conversation.typed("/part") == [Send("/part")] and conversation.leaving
    assert finished(conversation.closed(lost=False)) == Outcome(ExitCode.LEFT, "you left the room")


def test_what_was_typed_but_not_sent_when_it_ended_is_shown() -> None:
    conversation = in_room()
    finished(conversation.hear(lines.notice(None, messages.SHUTTING_DOWN())))
    assert shown(conversation.not_sent("half a\n\nthought")) == [
        "[12:00:00] *** Not sent: half a",
        "[12:00:00] *** Not sent: thought",
    ]


def test_ctrl_c_is_not_leave() -> None:
    conversation = in_room()
    effects = conversation.interrupt()
    assert sent(effects) == [] and finished(effects) == Outcome(ExitCode.INTERRUPTED, "interrupted")


def test_how_else_it_ends() -> None:
    cases = [
        (
            lines.notice("12:00:01", messages.KICKED(reason="")),
            Outcome(ExitCode.REFUSED, "removed by the operator"),
        ),
        (lines.notice(None, messages.SHUTTING_DOWN()), Outcome(ExitCode.LOST, "the server shut down")),
        (
            lines.notice(None, messages.NAME_LOST(name="bob")),
            Outcome(ExitCode.REFUSED, "removed from the room"),
        ),
    ]
    for line, outcome in cases:
        conversation = in_room()
        assert finished(conversation.hear(line)) == outcome
        assert conversation.hear(lines.message("12:00:02", "alice", "after")) == []
    assert finished(in_room().closed(lost=False)) == Outcome(
        ExitCode.LOST, "the server closed the connection"
    )
    assert finished(in_room().closed(lost=True)) == Outcome(
        ExitCode.LOST, "the connection to the server was lost"
    )
    assert finished(in_room().send_failed()) == Outcome(
        ExitCode.LOST, "the connection to the server was lost"
    )
