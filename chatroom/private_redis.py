"""A redis-server of the supervisor's own, for ``--processes N`` without ``--redis``.

It listens only on a Unix socket in a fresh directory readable by this user
alone (no TCP port: nothing else on the machine can reach it), keeps nothing
on disk (no snapshots, no append-only file), and stops with the server:
the supervisor stops it last, after every process, and the kernel sends it
SIGTERM should the supervisor die without doing so (``PR_SET_PDEATHSIG``).
History and bans live in it, so they last as long as the server does.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: How long redis-server has to answer a PING once started.
START_TIMEOUT = 10.0
#: prctl(2): the signal a child gets when the thread that started it ends.
_PR_SET_PDEATHSIG = 1


def available() -> str | None:
    """The redis-server to start, if one is installed."""
    return shutil.which("redis-server")


def _prepare() -> None:
    """Runs in the child before exec: SIGTERM it if the supervisor dies (Linux; elsewhere nothing).

    And take the signals the supervisor blocks (to take them with sigwait) back
    out of the mask, which an exec keeps: else SIGTERM would not stop it.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class PrivateRedis:
    def __init__(self, program: str) -> None:
        """Start ``program`` (redis-server) and wait until it answers; raises ``OSError`` if it does not."""
        self.dir = Path(tempfile.mkdtemp(prefix="chatroom-redis-"))
        self.socket = self.dir / "redis.sock"
        self.url = f"unix://{self.socket}?db=0"
        self._log = self.dir / "redis.log"
        argv = [program, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self._log)]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,  # a Ctrl-C at the terminal is for the supervisor, which stops it last
            preexec_fn=_prepare,  # started before any thread of ours exists
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise OSError(f"redis-server exited with {self.proc.returncode}: {self._last_words()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise OSError(f"redis-server did not answer within {START_TIMEOUT:g}s: {self._last_words()}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                probe.connect(str(self.socket))
                probe.sendall(b"PING\r\n")
                return probe.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _last_words(self) -> str:
        try:
            lines = self._log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no log"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop it (everything in it is gone) and remove its directory."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
