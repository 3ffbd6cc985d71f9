"""Tab completion in Client.py, as in irssi: commands, names, colours and ``:emoji_names:``.

What may follow a command comes from ``protocol.commands``' table
(``next_argument``), the one the server parses with, so every spelling the
server accepts completes alike: ``/pm bob /colour re`` as ``/msg bob /color re``.

* At the start of a line, commands: each one's canonical name, and an alias
  only where what is typed no longer fits the canonical name (``/q`` offers
  ``/query`` and ``/quit``, ``/co`` just ``/color``), so Tab on the start of a
  common command completes it at once.
* A name at the start of a line gets ``: `` after it (addressing someone, as
  irssi and weechat do); anywhere else, a space.
* Names match in any case, in the caller's order (the latest speakers first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from formatting import shortcodes
from formatting.colors import COLORS
from protocol.commands import ALL_COMMANDS, COLOR, AnySpec, Arg, next_argument

#: What comes after a name at the start of a line.
ADDRESS_SUFFIX = ": "


class ChatCompleter(Completer):
    def __init__(self, others: Callable[[], Iterable[str]], emoji_glyphs: bool = True) -> None:
        """``others``: the names to offer (everyone in the room but you)."""
        self.others = others
        self.emoji_glyphs = emoji_glyphs  # show the emoji beside its name in the menu

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        before = document.text_before_cursor
        words = before.split()
        word = "" if not before or before[-1].isspace() else words.pop()
        if word.startswith(":") and len(word) > 2:
            for code, glyph in shortcodes.starting_with(word):
                yield Completion(code, -len(word), display_meta=glyph if self.emoji_glyphs else None)
            return
        if not words:
            if word and not word.startswith("/"):
                yield from _starting_with(word, self.others(), ADDRESS_SUFFIX)
            if word:
                yield from _commands(word, ALL_COMMANDS)
            return
        expected = next_argument(words)
        if expected is Arg.NAME:
            yield from _starting_with(word, self.others(), " ")
        elif expected is Arg.COLOR:
            yield from _starting_with(word, COLORS, " ")
        elif expected is Arg.PRIVATE_TEXT and word.startswith("/"):
            yield from _commands(word, (COLOR,))
        elif expected in (Arg.TEXT, Arg.PRIVATE_TEXT) and word:
            yield from _starting_with(word, self.others(), " ")


def _commands(word: str, specs: Iterable[AnySpec]) -> Iterator[Completion]:
    """Each command's canonical name if it fits ``word``, else its aliases that do."""
    key = word.casefold()
    for spec in specs:
        fitting = [s for s in spec.spellings if s.casefold().startswith(key)]
        if spec.name in fitting:
            fitting = [spec.name]
        yield from _starting_with(word, fitting, " ")


def _starting_with(word: str, candidates: Iterable[str], suffix: str) -> Iterator[Completion]:
    key = word.casefold()
    for candidate in candidates:
        if candidate.casefold().startswith(key):
            yield Completion(candidate + suffix, -len(word), display=candidate)
