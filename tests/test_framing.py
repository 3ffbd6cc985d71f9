from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from protocol.framing import Line, LineReader, Overlong, encode_line


def lines_of(events: Sequence[object]) -> list[str]:
    return [e.text for e in events if isinstance(e, Line)]


def test_splits_on_lf_and_crlf() -> None:
    reader = LineReader()
    assert reader.feed(b"one\r\ntwo\nthr") == [Line("one"), Line("two")]
    assert reader.feed(b"ee\n") == [Line("three")]


def test_multibyte_character_split_across_reads() -> None:
    reader = LineReader()
    data = "héllo 🎉\n".encode()
    events = [e for i in range(len(data)) for e in reader.feed(data[i : i + 1])]
    assert events == [Line("héllo 🎉")]


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert LineReader().feed(b"a\xfe\x80b\n") == [Line("a\ufffd\ufffdb")]


def test_overlong_line_is_reported_once_and_skipped_to_its_newline() -> None:
    reader = LineReader(max_line=10)
    events = reader.feed(b"x" * 8)
    events += reader.feed(b"y" * 1000)
    events += reader.feed(b"z" * 1000 + b"\nafter\n")
    assert events == [Overlong(10), Line("after")]


def test_memory_stays_bounded_without_newline() -> None:
    reader = LineReader(max_line=100)
    for _ in range(1000):
        reader.feed(b"a" * 4096)
    assert reader.buffered <= 100


def test_line_of_exactly_the_limit_passes_even_with_crlf() -> None:
    reader = LineReader(max_line=5)
    assert reader.feed(b"12345\r\n123456\n") == [Line("12345"), Overlong(5)]


def test_partial_shows_an_unterminated_prompt() -> None:
    reader = LineReader()
    reader.feed(b"done\nYour name: ")
    assert reader.partial() == "Your name: "


def test_encode_line_uses_crlf() -> None:
    assert encode_line("hé") == "hé".encode() + b"\r\n"


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n\r\x00")), max_size=20), st.data())
def test_any_chunking_gives_the_same_lines(texts: list[str], data: st.DataObject) -> None:
    payload = b"".join(t.encode("utf-8", "surrogatepass") + b"\n" for t in texts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=10)))
    reader = LineReader(max_line=1 << 20)
    events = []
    start = 0
    for cut in [*cuts, len(payload)]:
        events += reader.feed(payload[start:cut])
        start = cut
    expected = [t.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for t in texts]
    assert lines_of(events) == expected


@given(st.binary(max_size=5000), st.integers(1, 64))
def test_never_holds_more_than_the_limit(payload: bytes, limit: int) -> None:
    reader = LineReader(max_line=limit)
    for event in reader.feed(payload):
        if isinstance(event, Line):
            assert len(event.text.encode("utf-8", "surrogatepass")) <= limit * 3
    assert reader.buffered <= limit


def test_telnet_commands_are_removed() -> None:
    # Ctrl-C in telnet sends IAC IP; option negotiation is IAC DO/WILL opt; IAC SB ... IAC SE.
    data = b"hi\xff\xf4 there\xff\xfd\x01\xff\xfa\x18\x01\xff\xf0!\r\n"
    assert LineReader().feed(data) == [Line("hi there!")]


def test_telnet_character_mode_ends_lines_with_cr_nul() -> None:
    # What Debian's telnet sent after "mode character": option replies, then CR NUL, no LF.
    data = b"line1\r\n\xff\xfd\x03\xff\xfd\x01abc\r\x00def\r\x00"
    assert LineReader().feed(data) == [Line("line1"), Line("abc"), Line("def")]


def test_a_lone_cr_ends_a_line() -> None:
    assert LineReader().feed(b"one\rtwo\r\rthree\n") == [Line("one"), Line("two"), Line(""), Line("three")]


def test_the_lf_or_nul_after_a_cr_may_come_in_the_next_read() -> None:
    reader = LineReader()
    assert reader.feed(b"one\r") == [Line("one")]
    assert reader.feed(b"\ntwo\r") == [Line("two")]
    assert reader.feed(b"\x00three\r") == [Line("three")]
    assert reader.feed(b"") == []
    assert reader.feed(b"\n") == []


def test_an_overlong_line_ending_in_crlf_is_reported_once() -> None:
    reader = LineReader(max_line=4)
    assert reader.feed(b"123456\r") == [Overlong(4)]
    assert reader.feed(b"\nok\r\n") == [Line("ok")]


@given(
    st.lists(
        st.tuples(
            # Not empty: a lone CR and then an empty line ending in LF is one CR LF.
            st.text(alphabet=st.characters(blacklist_characters="\n\r\x00"), min_size=1),
            st.sampled_from([b"\n", b"\r\n", b"\r\x00", b"\r"]),
        ),
        max_size=20,
    ),
    st.data(),
)
def test_every_line_ending_reads_the_same_however_it_is_split(
    lines: list[tuple[str, bytes]], data: st.DataObject
) -> None:
    texts = [text for text, _end in lines]
    payload = b"".join(text.encode("utf-8", "surrogatepass") + end for text, end in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=10)))
    reader, events, start = LineReader(max_line=1 << 20), [], 0
    for cut in [*cuts, len(payload)]:
        events += reader.feed(payload[start:cut])
        start = cut
    assert lines_of(events) == [t.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for t in texts]


@given(st.binary(max_size=300), st.data())
def test_any_chunking_gives_the_same_events_for_any_bytes(payload: bytes, data: st.DataObject) -> None:
    """Whatever arrives (telnet commands, NULs, invalid UTF-8), how it was split does not matter."""
    whole = LineReader(max_line=64).feed(payload)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=10)))
    reader, events, start = LineReader(max_line=64), [], 0
    for cut in [*cuts, len(payload)]:
        events += reader.feed(payload[start:cut])
        start = cut
    assert events == whole
