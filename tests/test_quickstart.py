"""The README's opening commands: they set up a venv, and CI runs the same test command."""

from __future__ import annotations

import re

from harness import ROOT


def opening_commands() -> list[str]:
    """The shell blocks before the README's first section: start the server, run the tests."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    opening = readme.split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", opening, re.DOTALL)


def test_the_quick_start_installs_into_a_venv_of_its_own() -> None:
    start, tests = opening_commands()[:2]
    # Debian and Ubuntu refuse a pip install into their own Python (externally-managed-environment).
    for command in (start, tests):
        steps = command.split(" && ")
        assert steps[0] == "python3 -m venv .venv", command
        assert all(step.startswith(".venv/bin/") for step in steps[1:]), command
    assert start.endswith("Server.py") and tests.endswith("-m pytest")


def test_ci_runs_the_readme_test_command_word_for_word() -> None:
    tests = opening_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == tests
