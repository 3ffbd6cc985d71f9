"""``python -m bench.run``: measure our server, ncat --chat and the textbook server side by side.

One command runs every chosen scenario at every chosen size against every chosen
server, prints a Markdown report with our ratios against each peer, and writes
the raw rows (JSON), the report (.md) and a plot (.png) under ``bench/results/``.
``--smoke`` is the tiny run CI does; see ``bench/README.md`` for the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.measure import Setup, auto_workers, measure
from bench.report import markdown, notes, plot
from bench.scenarios import PLOT_SIZES, PRESETS, SCENARIOS, SERVER_NAMES, Scenario, smoke
from bench.servers import ROOT, SERVERS

RESULTS = ROOT / "bench" / "results"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark Server.py against ncat --chat and a textbook threaded server, side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    names = ", ".join([*SCENARIOS, *PRESETS])
    parser.add_argument(
        "--scenario", help=f"comma-separated, from: {names} (default: 'default', or 'all' with --smoke)"
    )
    parser.add_argument("--clients", help="comma-separated client counts, instead of each scenario's own")
    parser.add_argument("--duration", type=float, help="seconds of sending per measurement")
    parser.add_argument(
        "--servers",
        help=f"comma-separated, from: {', '.join(SERVER_NAMES)} "
        "(default: each scenario's own; scale: ours,ours-p2,textbook, the others: ours,ncat,textbook)",
    )
    parser.add_argument("--senders", type=int, help="clients that send (default 2)")
    parser.add_argument("--rate", type=float, help="lines/s in total, for the fixed-rate scenarios")
    parser.add_argument("--workers", type=int, help="generator processes (default: 1 per 1000 clients)")
    parser.add_argument(
        "--window", type=int, default=1000, help="lines in flight per flooding sender (0: no limit)"
    )
    parser.add_argument("--line-bytes", type=int, default=64, help="bytes of text per line")
    parser.add_argument(
        "--probes", type=int, default=50, help="readers that time every line; the rest only count theirs"
    )
    parser.add_argument("--smoke", action="store_true", help="a few clients, about a second, every server")
    parser.add_argument("--out", type=Path, help="results directory (bench/results; bench/results/smoke)")
    parser.add_argument("--label", default="", help="added to the result file names")
    parser.add_argument(
        "--ours", type=Path, default=ROOT, help="checkout whose Server.py is measured (e.g. a git worktree)"
    )
    parser.add_argument(
        "--ours-args", default="", metavar="ARGS", help="more Server.py flags for ours ('--fanout-threads 1')"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--ignore-limits", action="store_true", help="run servers past their known limits (ncat will abort)"
    )
    return parser


def scenarios_from(text: str) -> list[Scenario]:
    chosen: list[str] = []
    for name in _csv(text):
        for part in PRESETS.get(name, (name,)):
            if part not in SCENARIOS:
                raise SystemExit(
                    f"unknown scenario {part!r}; choose from {', '.join([*SCENARIOS, *PRESETS])}"
                )
            if part not in chosen:
                chosen.append(part)
    return [SCENARIOS[name] for name in chosen]


def setups(args: argparse.Namespace) -> list[Setup]:
    """Every measurement to make, servers interleaved within each size."""
    args.scenario = args.scenario or ("all" if args.smoke else "default")
    chosen = _csv(args.servers) if args.servers else None
    for server in chosen or ():
        if server not in SERVER_NAMES:
            raise SystemExit(f"unknown server {server!r}; choose from {', '.join(SERVER_NAMES)}")
    sweep = "sweep" in _csv(args.scenario)
    cores = os.cpu_count() or 1
    out: list[Setup] = []
    for scenario in scenarios_from(args.scenario):
        if args.smoke:
            scenario = smoke(scenario)
        servers = chosen or list(scenario.servers)
        sizes = [int(n) for n in _csv(args.clients)] if args.clients else list(scenario.sizes)
        if sweep and not args.clients and not args.smoke and scenario.name in PRESETS["sweep"]:
            sizes = list(PLOT_SIZES)
        rate = scenario.rate if args.rate is None or scenario.rate is None else args.rate
        quick: dict[str, Any] = {"quiet": 0.1, "idle": 0.5} if args.smoke else {}
        window = args.window if scenario.window is None else scenario.window
        if args.smoke and scenario.window is None:
            quick["window"] = 200
        if args.smoke and scenario.probe_worker:
            quick["probes"] = 3  # so that some readers only count, in a process of their own
        for size in sizes:
            for stalled in scenario.stalled:
                for server in servers:
                    if scenario.web_share and not SERVERS[server].web:
                        continue  # browsers need a web front door: ours alone has one
                    workers = args.workers or scenario.workers or auto_workers(size + stalled, cores)
                    setup = Setup(
                        server=server,
                        scenario=scenario.name,
                        clients=size,
                        senders=args.senders or scenario.senders,
                        duration=args.duration or scenario.duration,
                        rate=rate,
                        stalled=stalled,
                        workers=workers,
                        line_bytes=args.line_bytes,
                        window=window,
                        probes=args.probes,
                        probe_worker=scenario.probe_worker,
                        web_share=scenario.web_share,
                        ignore_limits=args.ignore_limits,
                        ours=str(args.ours.resolve()),
                        ours_args=tuple(shlex.split(args.ours_args)),
                    )
                    out.append(replace(setup, **quick))
    return out


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=5)
        return done.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def _ncat_version() -> str:
    try:
        done = subprocess.run(["ncat", "--version"], capture_output=True, text=True, timeout=5)
        return (done.stdout + done.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "ncat not found"


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _progress(row: dict[str, Any]) -> str:
    head = f"{row['scenario']:>10} {row['clients']:>6}+{row['stalled']} {row['server']:<9}"
    if row["status"] in ("ok", "degraded"):
        lat = row["latency_ms"]
        return (
            f"{head} {row['deliveries_per_s']:>10.0f} deliveries/s  lost {row['lost']:<6} "
            f"p50 {lat['p50']} p99 {lat['p99']} ms  joins/s {row['join_rate']}  {notes(row)}"
        )
    return f"{head} {row['status']}: {row['reason']}"


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every server and worker is torn down on the way out."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    todo = setups(args)
    out_dir: Path = args.out or (RESULTS / "smoke" if args.smoke else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = out_dir / (stamp + (f"-{args.label}" if args.label else ""))
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "argv": sys.argv if argv is None else ["bench.run", *argv],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "ncat": _ncat_version(),
        "commit": _git("describe", "--always", "--dirty"),
        "ours": str(args.ours.resolve()),
        "ours_args": args.ours_args,
        "load_before": _load(),
    }
    signal.signal(signal.SIGTERM, _interrupt)
    rows: list[dict[str, Any]] = []
    interrupted = False
    print(f"{len(todo)} measurements; results in {out_dir}", file=sys.stderr)
    try:
        for setup in todo:
            row = measure(setup, out_dir / "logs")
            rows.append(row)
            print(_progress(row), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: writing what was measured", file=sys.stderr)
    meta["load_after"] = _load()
    meta["interrupted"] = interrupted
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    report = markdown(rows, meta)
    base.with_suffix(".md").write_text(report)
    print(report)
    written = [json_path, base.with_suffix(".md")]
    if not args.no_plot:
        title = f"{meta['date'][:10]}, {meta['cores']} cores (client and servers on one machine)"
        picture = plot(rows, base.with_suffix(".png"), title)
        if picture is not None:
            written.append(picture)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    failed = any(row["status"] == "failed" for row in rows)
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
