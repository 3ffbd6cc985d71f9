"""``pip install .`` gives working ``chat-server`` and ``chat-client`` commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sysconfig
import urllib.request
import venv
from pathlib import Path

from harness import ROOT, WAIT, Output


def test_pip_install_gives_both_commands(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    # The dependencies come from the environment running the tests (the README's .venv, or the
    # system's site-packages), so this needs no download but the build backend. A path in a .pth
    # file is appended to sys.path: what is installed in this venv comes first.
    site_packages = next(env_dir.glob("lib/python3*/site-packages"))
    installed = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (site_packages / "tested-environment.pth").write_text("\n".join(installed) + "\n")
    # Build from a copy: setuptools writes build/ and *.egg-info/ beside the sources.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "*cache*", "build", "bench"))
    install = subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", str(source)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    for command in ("chat-server", "chat-client"):
        shown = subprocess.run([bin_dir / command, "--help"], capture_output=True, text=True, cwd=tmp_path)
        assert shown.returncode == 0 and shown.stdout.startswith(f"usage: {command} ")
        assert "exit status" in shown.stdout.lower()

    # Run from elsewhere, so the installed modules are used, not this checkout.
    server = subprocess.Popen(
        [bin_dir / "chat-server", "--port", "0", "--approve", "all", "--db", ":memory:", "--web-port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        log = Output(server.stdout)
        port = re.search(r"listening on \S+:(\d+)", log.wait_for("listening on")).group(1)  # type: ignore[union-attr]
        client = subprocess.run(
            [bin_dir / "chat-client", "--port", port, "--name", "installed"],
            input=b"works from site-packages\n",
            capture_output=True,
            timeout=WAIT,
            cwd=tmp_path,
        )
        assert client.returncode == 0, client.stderr
        assert b"<installed> works from site-packages" in client.stdout
        page = re.search(r"web page at (\S+)", log.wait_for("web page at")).group(1)  # type: ignore[union-attr]
        # The page's files are package data: the installed server serves them.
        with urllib.request.urlopen(page + "chat.js", timeout=WAIT) as script:
            assert script.status == 200 and b"new WebSocket" in script.read()
        module = subprocess.run(
            [bin_dir / "python", "-c", "import chatroom.client.session as m; print(m.__file__)"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert str(env_dir) in module.stdout
    finally:
        server.terminate()
        server.wait(WAIT)
