"""The layout of server lines: the plain-text fast path gives the same bytes as the general one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from formatting.markup import parse
from protocol import lines

names = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=24)
bodies = st.text(st.sampled_from("ab *_~\\é👍"), max_size=30)


@given(names, bodies)
def test_a_plain_message_is_the_same_either_way(name: str, body: str) -> None:
    general = lines._line(
        "12:00:00", [lines._speaker(name), lines.SPACE, *parse(body, lines._body_style(None))]
    )
    assert lines.message("12:00:00", name, body) == general


def test_unstamped_stamp_and_address() -> None:
    line = lines.message("12:00:00", "alice", "hi **there**")
    assert lines.unstamped(line) == "<alice> hi there"
    batch = [line, lines.action("12:00:01", "bob", "waves [at] you"), lines.notice("12:00:02", "*** x")]
    assert lines.unstamped_lines(batch) == [lines.unstamped(x) for x in batch]
    assert lines.stamp(0.0) == lines.clock(0)
    assert lines.address("::1", 5) == "[::1]:5" and lines.address("10.0.0.1", 5) == "10.0.0.1:5"
