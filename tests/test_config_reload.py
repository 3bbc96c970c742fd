"""Hot reload never takes a file half written, nor one that silently drops leased hosts."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from dynvm.cli import main
from dynvm.config import Config, ConfigWatcher, removals
from tests.test_config import host


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_changed_file_is_read_only_once_stable(tmp_path: Path) -> None:
    path = tmp_path / "dynvm.ini"
    path.write_text(host(1) + host(2))
    clock = FakeClock()
    w = ConfigWatcher(path, env={}, check_interval=0.0, settle_secs=2.0, clock=clock)
    # Being written: the first half is there (and would validate on its own).
    path.write_text(host(1))
    assert sorted(w.current().hosts) == [1, 2]
    clock.now += 1.5
    path.write_text(host(1) + host(2, name="10.0.0.22"))  # the writer goes on
    assert sorted(w.current().hosts) == [1, 2] and w.generation == 1
    clock.now += 1.9  # stable, but not for 2 s yet
    assert w.current().hosts[2].url.endswith("//10.0.0.2")
    clock.now += 0.2
    assert w.current().hosts[2].url.endswith("//10.0.0.22")
    assert w.generation == 2


def test_the_check_interval_is_measured_on_the_clock_given(tmp_path: Path) -> None:
    path = tmp_path / "dynvm.ini"
    path.write_text(host(1))
    clock = FakeClock()
    w = ConfigWatcher(path, env={}, check_interval=3600.0, clock=clock)
    path.write_text(host(1) + host(2))
    assert sorted(w.current().hosts) == [1]  # not looked at yet: the hour has not passed
    clock.now += 3600.0
    assert sorted(w.current().hosts) == [1, 2] and w.generation == 2


def test_file_dropping_guarded_hosts_waits_for_the_operator(tmp_path: Path) -> None:
    path = tmp_path / "dynvm.ini"
    path.write_text(host(1) + host(2))

    def guard(old: Config, new: Config) -> str | None:
        lost = set(old.hosts) - set(new.hosts)
        return f"it drops xenhost{min(lost)}, which still hold leases" if lost else None

    w = ConfigWatcher(path, env={}, check_interval=0.0, guard=guard)
    path.write_text(host(1))  # cut short at a section boundary: still valid
    assert w.reload() is False
    assert sorted(w.current().hosts) == [1, 2]
    assert "xenhost2" in (w.last_error or "") and "--accept-removal" in (w.last_error or "")

    result = CliRunner().invoke(main, ["check-config", "--accept-removal", str(path)])
    assert result.exit_code == 0, result.output
    assert w.reload() is True
    assert sorted(w.current().hosts) == [1] and w.last_error is None

    # The confirmation covers that content only: another cut is refused again.
    path.write_text(host(1) + host(3))
    assert w.reload() is True
    path.write_text(host(1, name="10.0.0.11"))
    assert w.reload() is False and sorted(w.current().hosts) == [1, 3]


def test_removals_name_lost_hosts_and_caps(tmp_path: Path) -> None:
    from dynvm.config import parse_config

    old = parse_config(host(1, extra="host.vms.max.centos=20\n") + host(2), source="a", env={})
    new = parse_config(host(1), source="b", env={})
    notes = removals(old, new)
    assert any("xenhost2" in n for n in notes)
    assert any("host.vms.max.centos=20" in n for n in notes)
