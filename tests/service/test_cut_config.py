"""A configuration file cut short is never taken for a good one.

An editor or a copy that stops mid-line leaves a last line without its
newline (`host.vms.max.centos=12` cut to `=1`, `host.labels=p`, a template
name cut to `t`): the file is taken as still being written and, once it has
settled, refused. An empty value is an error for every key. A template the
host does not have is an error for `check-config` (which asks the hosts) and,
at reload, a warning on /health and in the log, with that OS not served on
that host until the template appears.

The service runs on a clock the test moves (`ticking`): a file's settling
period passes as the test looks, not in real time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dynvm.api import create_app
from dynvm.cli import main
from testbed.inis import farm_ini
from tests.service.conftest import dynvm_on, wait_until
from tests.support.clock import SteppedClock, ticking

CAP_KEY = "host.vms.max.centos"


@pytest.fixture
def files(tmp_path: Path, farm) -> tuple[Path, str, str]:
    """(INI path, its text up to the end of [xenhost2] without centos.template there,
    the real template name): the lines a test appends end the file, in [xenhost2]."""
    ini = farm_ini(farm, tmp_path, network_timeout_secs=20)
    template = ini.sections["xenhost2"].pop("centos.template")
    path = tmp_path / "dynvmservice.ini"
    base = ini.text()
    path.write_text(base + f"centos.template={template}\n{CAP_KEY}=12\n")
    return path, base, template


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def svc(files, clean_farm, clock) -> Iterator:
    with dynvm_on(files[0], clock=clock) as service:
        yield service


def last_line(text: str) -> int:
    return len(text.splitlines())


def check_config(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check-config", str(path)])
    return result.exit_code, result.output


def test_a_last_line_cut_short_is_refused_once_settled_then_taken_whole(files, svc,
                                                                        clock) -> None:
    path, base, template = files
    watcher = svc._rt._config.__self__
    client = create_app(service=svc).test_client()
    assert svc.config().hosts[2].vms_max == {"centos": 12}
    generation = watcher.generation
    cut = base + f"centos.template={template}\n{CAP_KEY}=1"
    path.write_text(cut)
    where = f"{path}:{last_line(cut)}: [xenhost2] {CAP_KEY}: "

    def refused() -> str | None:
        return json.loads(client.get("/health").get_data(as_text=True))["config"]["error"]

    error = wait_until(ticking(clock, refused), timeout=30,
                       what="the cut file to be refused once settled")
    assert where in error and "no newline" in error, error
    assert watcher.generation == generation and svc.config().hosts[2].vms_max == {"centos": 12}
    code, out = check_config(path)
    assert code == 2 and where in out and "no newline" in out, out
    # The writer finishes the line: the whole file is taken.
    path.write_text(cut + "5\n")
    wait_until(ticking(clock, lambda: svc.config().hosts[2].vms_max == {"centos": 15}),
               timeout=30, what="the finished file to be taken")
    assert refused() is None


@pytest.mark.parametrize("tail", [
    "centos.template={template}\n" + CAP_KEY + "=1",  # =12 cut to =1
    "centos.template={template}\nhost.labels=p",  # perf cut to p
    "centos.template=t",  # the template's name cut to t
    "centos.template={template}\n" + CAP_KEY + "=\n",  # an empty cap, even whole
    "centos.template={template}\nhost.labels=\n",
])
def test_cut_or_empty_last_lines_are_refused_by_reload_and_check_config(files, svc,
                                                                        tail: str) -> None:
    path, base, template = files
    watcher = svc._rt._config.__self__
    client = create_app(service=svc).test_client()
    text = base + tail.format(template=template)
    path.write_text(text)
    key = text.splitlines()[-1].split("=", 1)[0]
    where = f"{path}:{last_line(text)}: [xenhost2] {key}: "
    assert watcher.reload() is False
    health = client.get("/health")
    error = health.get_json()["config"]["error"]
    assert health.status_code == 503 and where in error, error
    assert ("no newline" in error) != text.endswith("\n") and (
        "must not be empty" in error) == text.endswith("\n"), error
    code, out = check_config(path)
    assert code == 2 and where in out, out
    assert svc.config().hosts[2].vms_max == {"centos": 12}  # the last good file stays


def test_check_config_asks_each_host_for_its_templates(files, tmp_path: Path) -> None:
    path, base, template = files
    code, out = check_config(path)
    assert code == 0 and "no template" not in out, out
    text = base + f"centos.template=t\n{CAP_KEY}=12\n"
    path.write_text(text)
    code, out = check_config(path)
    where = f"{path}:{last_line(text) - 1}: [xenhost2] centos.template: "
    assert code == 2 and where in out and "no template of that name" in out, out
    # A host that cannot be asked is said, but the file itself is good.
    down = tmp_path / "down.ini"
    down.write_text(text.replace(text[text.index("[xenhost2]"):],
                                 "[xenhost2]\nhost.name=http://127.0.0.1:9\nhost.user=root\n"
                                 "host.password=x\nhost.storage.name=Local storage\n"
                                 "centos.template=t\n"))
    code, out = check_config(down)
    assert code == 0 and "xenhost2" in out and "templates were not checked" in out, out


def test_missing_template_at_reload_is_a_warning_and_its_os_waits_for_it(
        files, svc, probe, caplog) -> None:
    path, base, template = files
    watcher = svc._rt._config.__self__
    client = create_app(service=svc).test_client()
    both = int(client.get("/getavailablecount/centos").text)
    caplog.set_level(logging.INFO)
    text = base + f"centos.template=t\n{CAP_KEY}=12\n"
    path.write_text(text)
    assert watcher.reload() is True
    where = f"{path}:{last_line(text) - 1}: [xenhost2] centos.template: "
    health = client.get("/health")
    assert health.status_code == 200, health.get_data(as_text=True)
    warnings = health.get_json()["config"]["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith(where), warnings
    assert "centos is not served on xenhost2" in warnings[0]
    assert where in caplog.text
    assert int(client.get("/getavailablecount/centos").text) < both
    r = client.get("/getservers/waits?os=centos&xhostref=2")
    assert r.status_code == 503, r.get_data(as_text=True)
    assert probe.vms_named("waits") == []
    # The template appears on the host: the OS is served there again, the warning goes.
    session = probe.session(1)
    x = session.xenapi
    clone = x.VM.clone(x.VM.get_by_name_label(template)[0], "t")
    try:
        wait_until(lambda: client.get("/health").get_json()["config"]["warnings"] == [],
                   timeout=30, what="the warning to go once the template exists")
        assert int(client.get("/getavailablecount/centos").text) > 0
        r = client.get("/getservers/served?os=centos&xhostref=2")
        assert r.status_code == 200, r.get_data(as_text=True)
        assert client.get("/releaseservers/served").status_code == 200
        assert "xenhost2 has centos.template again" in caplog.text
    finally:
        x.VM.destroy(clone)
        session.xenapi.session.logout()
