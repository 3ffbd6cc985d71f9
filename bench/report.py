"""Turning result rows into what people read: Markdown tables with our ratios, and a plot.

Ratios are always "ours ÷ peer" of the scenario's headline figure, with the
direction stated next to them, so nobody has to guess whether 0.5 is good.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.scenarios import SCENARIOS, SERVER_NAMES

Row = dict[str, Any]
MEASURED = ("ok", "degraded")


def metric(row: Row, name: str) -> float | None:
    if row.get("status") not in MEASURED:
        return None
    if name == "cpu_us_per_delivery":
        return cpu_per_delivery(row)
    if name == "cpu_ms_per_line":
        return cpu_per_line(row)
    if name == "peak_rss_mib":
        return float(row["proc"]["peak_rss_kib"]) / 1024
    if name == "pss_mib":
        return float(row["proc"].get("pss_kib", 0)) / 1024 or None
    value = row["latency_ms"]["p99"] if name == "p99_ms" else row.get(name)
    return None if value is None else float(value)


def cpu_per_line(row: Row) -> float | None:
    """The server's CPU time per line sent, in ms: every delivery of a line together (scale)."""
    sent = row.get("sent") or 0
    return row["proc"]["cpu_s_run"] * 1e3 / sent if sent else None


def cpu_per_delivery(row: Row) -> float | None:
    """The server's CPU time per line delivered, in µs: the figure the machine's noise moves least."""
    delivered = row.get("delivered") or 0
    return row["proc"]["cpu_s_run"] * 1e6 / delivered if delivered else None


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f}M{unit}"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.0f}k{unit}"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f}k{unit}"
    if abs(value) >= 10 or value == int(value):
        return f"{value:.0f}{unit}"
    return f"{value:.2f}{unit}"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(ours: float | None, peer: float | None) -> str:
    if ours is None or peer is None or peer == 0:
        return "–"
    return f"{ours / peer:.2f}×"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def notes(row: Row) -> str:
    """What a reader of the table must know about this row beyond its numbers."""
    if row.get("status") not in MEASURED:
        return f"**{row.get('status')}**: {_last_line(row.get('reason', ''))}"
    out = []
    if row.get("status") == "degraded":
        out.append(f"**degraded**: {_last_line(row['reason'])}")
    if row.get("mangled"):
        out.append(f"{row['mangled']} lines split by another's text")
    if row.get("garbled"):
        out.append(f"{row['garbled']} of them beyond repair")
    if row.get("duplicates"):
        out.append(f"{row['duplicates']} duplicates")
    for reason, count in row.get("disconnects", {}).items():
        out.append(f"{count}× disconnected ({reason})")
    for label, count in row.get("server_log", {}).get("counts", {}).items():
        out.append(f"log: {count}× {label}")
    if not row.get("settled", True):
        out.append("join chatter still arriving at start")
    return "; ".join(out)


def _per_row_table(rows: list[Row], columns: dict[str, Callable[[Row], object]]) -> list[str]:
    """A line a row: clients, server, ``columns`` (header: cell), notes; "–" where not measured."""
    out = [
        "| clients | server | " + " | ".join(columns) + " | notes |",
        "|---:|---|" + "---:|" * len(columns) + "---|",
    ]
    for row in rows:
        measured = row.get("status") in MEASURED
        cells = [str(cell(row)) if measured else "–" for cell in columns.values()]
        out.append(f"| {row['clients']} | {row['server']} | " + " | ".join(cells) + f" | {notes(row)} |")
    return out


def _main_table(rows: list[Row]) -> list[str]:
    return _per_row_table(
        rows,
        {
            "deliveries/s": lambda r: _num(r["deliveries_per_s"]),
            "sent lines/s": lambda r: _num(r["send_rate"]),
            "lost": lambda r: r["lost"],
            "p50 ms": lambda r: _ms(r["latency_ms"]["p50"]),
            "p99 ms": lambda r: _ms(r["latency_ms"]["p99"]),
            "max ms": lambda r: _ms(r["latency_ms"]["max"]),
            "joins/s": lambda r: _num(r["join_rate"]),
            "peak RSS MiB": lambda r: f"{r['proc']['peak_rss_kib'] / 1024:.1f}",
            "threads": lambda r: r["proc"]["threads_peak"],
            "server CPU s": lambda r: f"{r['proc']['cpu_s_run']:.2f}",
            "server CPU µs/delivery": lambda r: _us(cpu_per_delivery(r)),
            "generator CPU s": lambda r: f"{r['generator']['cpu_s_run']:.2f}",
        },
    )


def _web_table(rows: list[Row]) -> list[str]:
    """Browsers beside terminals: the latency of each kind of reader in the same run."""
    return _per_row_table(
        rows,
        {
            "readers: terminals + browsers": lambda r: (
                f"{r['readers'] - r['web_readers']} + {r['web_readers']}"
            ),
            "lost": lambda r: r["lost"],
            "all p50 / p99 ms": lambda r: f"{_ms(r['latency_ms']['p50'])} / {_ms(r['latency_ms']['p99'])}",
            "terminals p50 / p99 ms": lambda r: (
                f"{_ms(r['tcp_latency_ms']['p50'])} / {_ms(r['tcp_latency_ms']['p99'])}"
            ),
            "browsers p50 / p99 ms": lambda r: (
                f"{_ms(r['web_latency_ms']['p50'])} / {_ms(r['web_latency_ms']['p99'])}"
            ),
            "server CPU s": lambda r: f"{r['proc']['cpu_s_run']:.2f}",
            "threads": lambda r: r["proc"]["threads_peak"],
        },
    )


def _us(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _ratio_table(rows: list[Row], name: str, higher: bool, unit: str) -> list[str]:
    better = "higher" if higher else "lower"
    peers = [s for s in SERVER_NAMES if s != "ours" and any(r["server"] == s for r in rows)]
    out = [
        f"Ours ÷ peer, {unit} ({better} is better for us):",
        "",
        "| clients | ours | " + " | ".join(f"÷ {p}" for p in peers) + " |",
        "|---:|---:|" + "---:|" * len(peers),
    ]
    for size in sorted({r["clients"] for r in rows}):
        at = {r["server"]: metric(r, name) for r in rows if r["clients"] == size}
        ours = at.get("ours")
        shown = _ms(ours) if name.endswith("_ms") else _us(ours) if name.startswith("cpu") else _num(ours)
        out.append(f"| {size} | {shown} | " + " | ".join(_ratio(ours, at.get(p)) for p in peers) + " |")
    return out


def _stalled_table(rows: list[Row]) -> list[str]:
    out = [
        "| clients | server | deliveries/s without | with a stalled reader | with ÷ without "
        "| with, in the last second of sending | lost with | notes (with) |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for size in sorted({r["clients"] for r in rows}):
        for server in SERVER_NAMES:
            pair = {r["stalled"]: r for r in rows if r["clients"] == size and r["server"] == server}
            if not pair:
                continue
            without = metric(pair[0], "deliveries_per_s") if 0 in pair else None
            stalled = next((r for k, r in pair.items() if k), None)
            with_ = metric(stalled, "deliveries_per_s") if stalled else None
            measured = stalled is not None and stalled.get("status") in MEASURED
            lost = stalled["lost"] if measured and stalled else "–"
            final = _num(stalled["final_second_rate"]) if measured and stalled else "–"
            out.append(
                f"| {size} | {server} | {_num(without)} | {_num(with_)} | {_ratio(with_, without)} "
                f"| {final} | {lost} | {notes(stalled) if stalled else ''} |"
            )
    return out


def _scale_table(rows: list[Row]) -> list[str]:
    return _per_row_table(
        rows,
        {
            "joined": lambda r: r["joined"],
            "join s": lambda r: f"{r['join_s']:.1f}",
            "p50 ms": lambda r: _ms(r["latency_ms"]["p50"]),
            "p99 ms": lambda r: _ms(r["latency_ms"]["p99"]),
            "max ms": lambda r: _ms(r["latency_ms"]["max"]),
            "lost": lambda r: r["lost"],
            "peak RSS MiB": lambda r: f"{r['proc']['peak_rss_kib'] / 1024:.1f}",
            "PSS MiB": lambda r: f"{r['proc'].get('pss_kib', 0) / 1024:.1f}",
            "RSS/client KiB": lambda r: r["proc"]["rss_per_client_kib"],
            "threads": lambda r: r["proc"]["threads_peak"],
            "CPU ms/line": lambda r: _ms(cpu_per_line(r)),
        },
    )


#: The scale scenario's comparisons: what, and its figure.
SCALE_FIGURES = {
    "p99": "p99_ms",
    "join s": "join_s",
    "peak RSS": "peak_rss_mib",
    "PSS": "pss_mib",
    "CPU/line": "cpu_ms_per_line",
}


def _scale_ratios(rows: list[Row]) -> list[str]:
    """ours-p2 against ours and against the textbook server, figure by figure (lower is better)."""
    measured = {r["server"] for r in rows}
    pairs = [(a, b) for a, b in (("ours-p2", "ours"), ("ours-p2", "textbook"), ("ours", "textbook"))]
    pairs = [(a, b) for a, b in pairs if a in measured and b in measured]
    if not pairs:
        return []
    out = [
        "Ratios, lower is better:",
        "",
        "| clients | ratio | " + " | ".join(SCALE_FIGURES) + " |",
        "|---:|---|" + "---:|" * len(SCALE_FIGURES),
    ]
    for size in sorted({r["clients"] for r in rows}):
        at = {r["server"]: r for r in rows if r["clients"] == size}
        for a, b in pairs:
            if a in at and b in at:
                cells = [_ratio(metric(at[a], m), metric(at[b], m)) for m in SCALE_FIGURES.values()]
                out.append(f"| {size} | {a} ÷ {b} | " + " | ".join(cells) + " |")
    return out


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    """The whole report: one section per scenario, tables then ratios."""
    out = [
        f"# Benchmark {meta['date']}",
        "",
        f"{meta['cores']} cores, Python {meta['python']}, {meta['ncat']}, commit {meta['commit']}; "
        f"load average before/after: {meta['load_before']} / {meta.get('load_after', '?')}.",
    ]
    if meta.get("ours_args"):
        out.append(f"Ours ran with `{meta['ours_args']}`.")
    for name, scenario in SCENARIOS.items():
        mine = [r for r in rows if r["scenario"] == name]
        if not mine:
            continue
        first = mine[0]
        out += ["", f"## {name}: {scenario.title}", ""]
        out.append(f"{first['senders']} senders, {first['duration']:g} s of sending per measurement.")
        out.append("")
        if name == "stalled":
            out += _stalled_table(mine)
            out += [
                "",
                *_ratio_table([r for r in mine if r["stalled"]], "deliveries_per_s", True, "deliveries/s"),
            ]
        elif name == "scale":
            out += _scale_table(mine)
            ratios = _scale_ratios(mine)
            out += ["", *ratios] if ratios else []
        elif scenario.web_share:
            out += _web_table(mine)
        else:
            out += _main_table(mine)
            unit = "p99 latency ms" if scenario.metric == "p99_ms" else "deliveries/s"
            out += ["", *_ratio_table(mine, scenario.metric, scenario.higher_is_better, unit)]
            if scenario.rate is None:
                cpu = "server CPU µs per delivery"
                out += ["", *_ratio_table(mine, "cpu_us_per_delivery", False, cpu)]
    return "\n".join(out) + "\n"


def _series(rows: Iterable[Row], scenario: str, server: str, name: str) -> tuple[list[int], list[float]]:
    points = sorted(
        (r["clients"], value)
        for r in rows
        if r["scenario"] == scenario
        and r["server"] == server
        and r.get("stalled", 0) == 0
        and (value := metric(r, name)) is not None
    )
    return [p[0] for p in points], [p[1] for p in points]


def plot(rows: list[Row], path: Path, title: str) -> Path | None:
    """Deliveries/s (flood) and p99 latency (fixed rate) against clients, one line per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("throughput", "deliveries_per_s", "deliveries/s (2 senders flooding)"),
        ("latency", "p99_ms", "p99 latency, ms (200 lines/s)"),
    )
    if not any(_series(rows, s, server, m)[0] for s, m, _ in panels for server in SERVER_NAMES):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (scenario, name, label) in zip(axes, panels, strict=True):
        for server in SERVER_NAMES:
            xs, ys = _series(rows, scenario, server, name)
            if xs:
                ax.plot(xs, ys, marker="o", label=server)
        skipped = sorted(
            {
                f"{r['server']} at {r['clients']}"
                for r in rows
                if r["scenario"] == scenario and r["status"] == "skipped"
            }
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("clients")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if skipped:
            ax.set_title("not run: " + ", ".join(skipped), fontsize=8)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
