"""The loads the project reports on, with their default sizes; ``--smoke`` shrinks them all.

Each scenario becomes one measurement per (size, stalled readers, server), with
the servers interleaved so the three figures for a size are taken close in time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SERVER_NAMES = ("ours", "ours-p2", "ncat", "textbook")
#: The servers a scenario measures unless ``--servers`` says otherwise.
PEERS = ("ours", "ncat", "textbook")
#: Client counts on the plot (2000 and up only on a quiet machine).
PLOT_SIZES = (10, 50, 200, 500, 2000)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    sizes: tuple[int, ...]
    rate: float | None  # lines/s from all senders together; None floods
    duration: float
    stalled: tuple[int, ...] = (0,)
    senders: int = 2
    #: The figure the ratios compare, and whether more of it is better.
    metric: str = "deliveries_per_s"
    higher_is_better: bool = True
    workers: int | None = None  # None: one per thousand clients, at most one per core
    window: int | None = None  # a flooding sender's lines in flight; None: --window; 0: no limit
    probe_worker: bool = False  # see bench.measure.Setup.probe_worker
    web_share: float = 0.0  # readers that are browsers, over the web front door's WebSocket
    servers: tuple[str, ...] = PEERS


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "throughput",
            "2 senders flooding (1000 lines in flight each), every reader counted",
            sizes=(50, 500),
            rate=None,
            duration=5.0,
        ),
        Scenario(
            "blast",
            "2 senders writing as fast as the server reads (no window), every reader counted",
            sizes=(50, 500),
            rate=None,
            duration=5.0,
            window=0,
        ),
        Scenario(
            "latency",
            "200 lines/s in total from 2 senders, end-to-end latency",
            sizes=(50,),
            rate=200.0,
            duration=5.0,
            metric="p99_ms",
            higher_is_better=False,
        ),
        Scenario(
            "scale",
            "many concurrent clients, 1 line/s in total",
            sizes=(10_000,),
            rate=1.0,
            duration=20.0,
            metric="p99_ms",
            higher_is_better=False,
            probe_worker=True,
            # Where one process is short of cores: ours, ours on every core, and the textbook server.
            servers=("ours", "ours-p2", "textbook"),
        ),
        Scenario(
            "web",
            "200 lines/s in total from 2 senders, half the readers browsers (WebSocket), end-to-end latency",
            sizes=(50,),
            rate=200.0,
            duration=5.0,
            metric="p99_ms",
            higher_is_better=False,
            web_share=0.5,
        ),
        # A reader that never reads soaks up about 3 MB of kernel buffers on loopback
        # before a server that waits for it stalls: 15 s is long enough to see that.
        Scenario(
            "stalled",
            "2 senders flooding, without and with one reader that never reads",
            sizes=(50,),
            rate=None,
            duration=15.0,
            stalled=(0, 1),
        ),
    )
}

#: Named groups for ``--scenario``.
PRESETS: dict[str, tuple[str, ...]] = {
    "default": ("throughput", "blast", "latency", "web", "stalled"),
    "all": ("throughput", "blast", "latency", "web", "stalled", "scale"),
    "sweep": ("throughput", "latency"),  # with PLOT_SIZES unless --clients says otherwise
}


def smoke(scenario: Scenario) -> Scenario:
    """The CI size: a few clients for under a second each; scale still has counting processes."""
    if scenario.name == "scale":
        return replace(scenario, sizes=(6,), duration=0.6, rate=10.0, workers=2)
    return replace(scenario, sizes=(4,), duration=0.6)
