"""Every `dynvm …` command the README shows exists as written: its subcommands, and
each `--option` it uses on that command (or on one of its groups)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dynvm.cli.main import main

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands() -> list[str]:
    """`dynvm …` lines of the README's shell blocks (a `$ ` prompt allowed), comments cut."""
    out, in_block = [], False
    text_lines = README.read_text().replace("\\\n", " ").splitlines()  # continued lines joined
    for line in text_lines:
        if line.startswith("```"):
            in_block = line.strip() in ("```sh", "```console", "```bash", "```shell")
            continue
        text = line.strip().removeprefix("$ ")
        if in_block and text.startswith("dynvm "):
            out.append(text.split(" #", 1)[0].strip())
    return out


COMMANDS = readme_commands()


def test_the_readme_shows_commands() -> None:
    assert len(COMMANDS) >= 12, COMMANDS
    assert "dynvm --version" in COMMANDS


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_exists(line: str) -> None:
    words = shlex.split(line)[1:]
    cmd: click.Command = main
    path: list[str] = []
    options = {o for p in main.params for o in getattr(p, "opts", [])}
    for w in words:
        if isinstance(cmd, click.Group) and w in cmd.commands:
            cmd = cmd.commands[w]
            path.append(w)
            options |= {o for p in cmd.params for o in getattr(p, "opts", [])}
    used = {re.split("=", w, maxsplit=1)[0] for w in words if w.startswith("--")}
    assert used <= options | {"--help", "--version"}, (line, used - options)
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, (line, result.output)
