"""The `dynvm` command through click's runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dynvm.cli import main

GOOD_INI = """\
[common]
vm.expiry.minutes=600

[store]
backend=sqlite
sqlite.path={tmp}/dynvm.sqlite

[xenhost1]
host.name=http://127.0.0.1:9
host.user=root
host.password=${{DYNVM_TEST_XEN_PASSWORD}}
host.storage.name=Local storage
host.labels=perf
centos.template=tmpl-cnt7.7
windows.template=tmpl-win16dc - PATCHED (1)

[xenhost3]
host.name=http://127.0.0.1:10
host.user=root
host.password=secret
host.storage.name=Local storage
centos.template=tmpl-cnt7.7
"""


@pytest.mark.parametrize("args", [[], ["serve"], ["sim"], ["check-config"]])
def test_help(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_help_lists_commands_and_options() -> None:
    runner = CliRunner()
    top = runner.invoke(main, ["--help"]).output
    for command in ("serve", "sim", "check-config"):
        assert command in top
    serve = runner.invoke(main, ["serve", "--help"]).output
    for option in ("--config", "--bind", "--workers", "--sim-speed", "127.0.0.1:5000"):
        assert option in serve
    sim = runner.invoke(main, ["sim", "--help"]).output
    for option in ("--hosts", "--pools", "--vms-per-host", "--from-db", "--bind",
                   "--port-base", "--speed", "--https", "--local-socket"):
        assert option in sim


def test_check_config_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNVM_TEST_XEN_PASSWORD", "from-env")
    ini = tmp_path / "dynvm.ini"
    ini.write_text(GOOD_INI.format(tmp=tmp_path))
    result = CliRunner().invoke(main, ["check-config", str(ini)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{ini}: OK" in out
    assert "xenhost1: http://127.0.0.1:9 labels=perf" in out
    assert "centos='tmpl-cnt7.7'" in out
    assert "windows='tmpl-win16dc - PATCHED (1)'" in out
    assert "xenhost3: http://127.0.0.1:10" in out
    assert "at most 600 min" in out
    assert "from-env" not in out and "secret" not in out


def test_check_config_bad_file_exits_2_with_message(tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text("[xenhost1]\nhost.name=10.0.0.1\n")
    result = CliRunner().invoke(main, ["check-config", str(ini)])
    assert result.exit_code == 2
    assert "refused" in result.output
    assert "xenhost1" in result.output


def test_check_config_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", str(tmp_path / "nope.ini")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


@pytest.mark.parametrize("args", [
    ["maintenance", "reboot", "1", "--config", "{missing}"],
    ["--config", "{missing}", "maintenance", "reboot", "1"],
    ["hosts", "drain", "1", "--config", "{missing}"],
    ["hosts", "--config", "{missing}", "drain", "1"],
    ["maintenance", "status", "--config", "{missing}"],
    ["token", "list", "--config", "{missing}"],
    ["check-config", "--config", "{missing}"],
])
def test_config_anywhere_and_a_missing_file_is_one_line(tmp_path: Path, args: list[str]) -> None:
    missing = str(tmp_path / "missing.ini")
    result = CliRunner().invoke(main, [a.format(missing=missing) for a in args])
    assert result.exit_code == 2, result.output
    assert result.output == f"dynvm: no configuration file {missing}\n"


def test_no_configuration_at_all_says_how_to_give_one(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no embedded farm's file here
    monkeypatch.delenv("DYNVM_CONFIG", raising=False)
    for args in (["hosts"], ["maintenance", "status"], ["token", "list"], ["check-config"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("dynvm: no configuration: pass --config FILE or set "
                                        "DYNVM_CONFIG"), result.output
        assert len(result.output.splitlines()) == 1


def test_an_unforeseen_error_is_one_line_not_a_traceback(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ini = tmp_path / "dynvm.ini"
    ini.write_text(GOOD_INI.format(tmp=tmp_path))
    monkeypatch.setenv("DYNVM_TEST_XEN_PASSWORD", "x")
    sqlite = tmp_path / "dynvm.sqlite"
    sqlite.mkdir()  # the store's file is a directory: SQLite cannot open it
    result = CliRunner().invoke(main, ["token", "list", "--config", str(ini)])
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1, \
        result.output


def test_serve_refuses_bad_config_before_starting(tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text("[nonsense]\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(ini), "--bind", "127.0.0.1:0"])
    assert result.exit_code == 2
    assert "refused" in result.output


def test_client_commands_use_the_public_helpers_of_the_client_module() -> None:
    """keys, snapshots and inspect build on dynvm.cli.client's client_for / run_body /
    terminal, never on a private name of it."""
    import ast

    import dynvm.cli as cli

    users = []
    for path in sorted(Path(cli.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "dynvm.cli.client":
                users.append(path.name)
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from dynvm.cli.client"
    assert {"keys.py", "snapshots.py", "inspect.py"} <= set(users)
