"""The benchmark suite at its smoke size, through the real runner: results well-formed, counts consistent.

Nothing here checks a speed. How fast each server is belongs in the report of
``python -m bench.run``, read side by side; CI only makes sure the suite still
runs, that every server produced its rows, and that the counts add up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import wire
from bench.measure import Setup, measure, plans
from bench.scenarios import SCENARIOS
from protocol import lines, messages

ROOT = Path(__file__).resolve().parent.parent
HAVE_NCAT = shutil.which("ncat") is not None
SERVERS = ("ours", "ncat", "textbook") if HAVE_NCAT else ("ours", "textbook")

Rows = list[dict[str, Any]]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--servers", ",".join(SERVERS), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    [result] = out.glob("*.json")
    return {"out": out, "stdout": done.stdout, **json.loads(result.read_text())}


def _measured(rows: Rows) -> Rows:
    return [r for r in rows if r["status"] in ("ok", "degraded")]


def test_every_server_has_a_row_for_every_scenario(smoke: dict[str, Any]) -> None:
    expected = {
        (name, stalled, server)
        for name, scenario in SCENARIOS.items()
        for stalled in scenario.stalled
        for server in SERVERS
        if server == "ours" or not scenario.web_share  # browsers need our web front door
    }
    got = {(r["scenario"], r["stalled"], r["server"]) for r in smoke["rows"]}
    assert got == expected
    assert [r for r in smoke["rows"] if r["status"] != "ok"] == []


def test_counts_add_up(smoke: dict[str, Any]) -> None:
    for row in _measured(smoke["rows"]):
        what = f"{row['scenario']}/{row['server']}"
        assert row["joined"] == row["clients"] + row["stalled"], what
        assert row["readers"] == row["clients"], what
        # Every reader but the sender gets every line: the same basis for all three servers.
        assert row["expected"] == row["sent"] * (row["clients"] - 1), what
        assert row["delivered"] + row["lost"] == row["expected"], what
        assert 0 <= row["lost"] <= row["expected"], what
        if row["timed_readers"] == row["readers"]:  # at smoke size every reader times its lines
            assert row["latency_ms"]["samples"] == row["delivered"], what
        assert 0 <= row["reader_min"] <= row["reader_max"] <= row["sent"], what
        assert row["sent"] > 0, what


def test_our_server_loses_nothing_at_smoke_size(smoke: dict[str, Any]) -> None:
    ours = [r for r in smoke["rows"] if r["server"] == "ours"]
    assert ours
    for row in ours:
        assert row["lost"] == 0, row["scenario"]
        assert row["duplicates"] == 0, row["scenario"]
        assert row["disconnects"] == {}, row["scenario"]
        assert "errors" not in row["server_log"]["counts"], row["server_log"]


def test_browsers_are_counted_and_timed_beside_terminals(smoke: dict[str, Any]) -> None:
    [row] = [r for r in smoke["rows"] if r["scenario"] == "web"]
    assert row["web_readers"] == 1 and row["lost"] == 0
    web, tcp = row["web_latency_ms"], row["tcp_latency_ms"]
    assert web["samples"] == row["sent"]  # the browser got every line, and timed each
    assert web["samples"] + tcp["samples"] == row["latency_ms"]["samples"]


def test_echoes_to_the_sender_are_left_out(smoke: dict[str, Any]) -> None:
    """Ours and the textbook server echo a line to its sender, ncat does not; none of it counts."""
    for row in _measured(smoke["rows"]):
        what = f"{row['scenario']}/{row['server']}"
        if row["server"] == "ncat":
            assert row["own_echoes"] == 0, what
        else:  # the last echoes may still be on their way when the counting stops
            assert 0 < row["own_echoes"] <= row["sent"], what


def test_server_costs_are_read_from_proc(smoke: dict[str, Any]) -> None:
    for row in _measured(smoke["rows"]):
        proc = row["proc"]
        assert proc["peak_rss_kib"] >= proc["rss_idle_kib"] > 0
        assert proc["cpu_s_total"] >= proc["cpu_s_run"] >= 0
        if row["server"] in ("ours", "textbook"):  # a thread per client
            assert proc["threads_peak"] > row["clients"] + row["stalled"]
        else:
            assert proc["threads_peak"] == 1


def test_report_and_plot_are_written(smoke: dict[str, Any]) -> None:
    out: Path = smoke["out"]
    [report] = out.glob("*.md")
    assert "Ours ÷ peer" in report.read_text()
    assert "Ours ÷ peer" in smoke["stdout"]
    [picture] = out.glob("*.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(Path(r["server_log"]["path"]).is_file() for r in smoke["rows"])


@pytest.mark.skipif(not HAVE_NCAT, reason="ncat is not installed")
def test_ncat_above_its_select_limit_is_skipped_not_run(tmp_path: Path) -> None:
    row = measure(Setup("ncat", "scale", clients=2000, senders=2, duration=1.0, rate=1.0), tmp_path)
    assert row["status"] == "skipped"
    assert "FD_SETSIZE" in row["reason"]


def test_plans_spread_clients_and_timed_readers() -> None:
    setup = Setup("ours", "scale", clients=300, senders=2, duration=1.0, rate=1.0, stalled=1, workers=3)
    workers = plans(setup, 1, "ours")
    clients = [c for w in workers for c in w.clients]
    assert sorted(c.cid for c in clients) == list(range(301))
    assert [len(w.clients) for w in workers] == [101, 100, 100]
    assert {c.cid: c.rank for c in clients if c.rank is not None} == {0: 0, 1: 1}
    assert [c.cid for c in clients if c.stalled] == [300]
    timed = sorted(c.cid for c in clients if c.eager)
    assert timed[:3] == [0, 1, 6] and len(timed) == 51  # the senders and every 6th reader
    assert sum(w.parallel for w in workers) <= setup.parallel


def test_probe_worker_keeps_timed_readers_apart_from_background_counters() -> None:
    setup = Setup("ours", "scale", clients=300, senders=2, duration=1, rate=1, workers=2, probe_worker=True)
    first, *counters = plans(setup, 1, "ours")
    assert not first.background and all(c.eager for c in first.clients) and len(first.clients) == 51
    assert [w.background for w in counters] == [True, True]
    assert not any(c.eager for w in counters for c in w.clients)
    assert sum(len(w.clients) for w in counters) == 249


# --- the wire format, without servers --------------------------------------------------


def _stream(reader: int) -> tuple[bytes, int]:
    """Lines as the servers send them: names, colours, ncat's prefixes, own lines, a duplicate and a gap."""
    out, fresh = [], 0
    for seq in range(60):
        for sender in (0, 1, reader):
            if sender == 1 and seq == 7:
                continue  # lost
            line = wire.make_line(sender, seq, 1_000_000 + seq, 64).decode().rstrip("\n")
            out.append(lines.message("12:00:00", f"c{sender}", line) + "\r\n")
            fresh += sender != reader
    out.append(lines.message("12:00:00", "c0", wire.make_line(0, 3, 1, 64).decode().rstrip()) + "\r\n")
    ncat = "<user5> " + wire.make_line(0, 60, 1, 64).decode()
    out.append(ncat[:20] + "<user6> " + ncat[20:])  # a prefix inside a line, as ncat does under load
    # Two lines spliced into one token-shaped string with a forged, higher sequence number:
    # rejected by the check digits, so it hides nothing as a duplicate.
    forged = wire.make_line(0, 99, 1, 64).decode()[:14] + wire.make_line(1, 5, 7, 64).decode()[14:]
    out.append("<user5> " + forged)
    return "".join(out).encode(), fresh + 1


@pytest.mark.parametrize("small", [True, False], ids=["regex", "numpy"])
def test_tally_counts_exactly(small: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "SMALL_CHUNK", 10**9 if small else 0)
    data, fresh = _stream(reader=9)
    cleaned, mangled = wire.clean_ncat(data)
    tally, reader = wire.Tally(), wire.Reader(9)
    half = cleaned.index(b"\n", len(cleaned) // 2) + 1
    tally.feed(reader, cleaned[:half], 2_000_000)
    tally.feed(reader, cleaned[half:], 2_000_000)
    assert (tally.delivered, tally.duplicates, tally.own, mangled, tally.garbled) == (fresh, 1, 60, 1, 1)
    assert reader.last == {0: 60, 1: 59}
    assert int(tally.hist.sum()) == fresh
    assert tally.max_us == (2_000_000 - 1) // 1000


def test_histogram_buckets_round_trip() -> None:
    for us in (0, 1, 63, 64, 127, 128, 1000, 123_456, 10**9):
        assert abs(wire.bucket_value(wire.bucket(us)) - us) <= max(0.5, us / 32)
    sample = [0] * wire.HIST_BUCKETS
    for us in range(1, 101):
        sample[wire.bucket(us * 1000)] += 1
    assert wire.percentile(sample, 50) == pytest.approx(50_000, rel=0.04)
    assert wire.percentile([0] * wire.HIST_BUCKETS, 50) is None


def test_handshake_with_our_server_wording() -> None:
    shake = wire.Handshake("ours", "c3")
    greeting = (lines.notice(None, messages.GREETING()) + "\r\n" + messages.NAME_PROMPT).encode()
    assert shake.feed(greeting) == (b"c3\n", None)
    welcome = lines.notice("12:00:00", messages.WELCOME(name="c3", count=1, names="c3")) + "\r\nrest"
    assert shake.feed(welcome.encode()) == (b"", b"rest")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_ours_on_two_processes_is_measured_across_them(tmp_path: Path) -> None:
    """``ours-p2`` (the scale scenario's --processes 2): everything delivered, costs over every process."""
    setup = Setup(
        "ours-p2", "scale", clients=6, senders=2, duration=0.6, rate=10.0, workers=2, probe_worker=True
    )
    row = measure(setup, tmp_path)
    assert row["status"] == "ok", row.get("reason")
    assert row["lost"] == 0 and row["delivered"] == row["expected"] > 0
    assert "errors" not in row["server_log"]["counts"], row["server_log"]
    # The supervisor serves no one: its two processes hold the clients' threads between them.
    assert row["proc"]["threads_peak"] > row["clients"]
    assert row["proc"]["pss_kib"] > 0


def test_the_floor_is_measured_for_one_and_two_sending_processes() -> None:
    """``bench.floor``: bare send loops, no server; every timed reader gets every line."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.floor", "--readers", "100", "--lines", "3", "--gap", "0.05"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line]
    assert [row.split(",")[1].strip() for row in rows] == ["1 sending process(es)", "2 sending process(es)"]
    for row in rows:
        p50, p99, most = (float(part.split()[1]) for part in row.split(": ")[1].split(", "))
        assert 0 < p50 <= p99 <= most, row
