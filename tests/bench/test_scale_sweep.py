"""`bench.scale`'s sweep: one farm per size for all its runs, and a failed run reported
while the others go on (what it measured before failing kept)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench import scale


class FakeFarm:
    """Stands in for the simulated farm: the sweep's bookkeeping is what is tested."""

    started: list[int] = []
    stopped: list[int] = []

    def __init__(self, size: int, args: argparse.Namespace, work: Path) -> None:
        self.size = size
        FakeFarm.started.append(size)

    def stop(self) -> None:
        FakeFarm.stopped.append(self.size)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    FakeFarm.started, FakeFarm.stopped = [], []
    done: list[Path] = []

    def one_run(farm: FakeFarm, args: argparse.Namespace, work: Path,
                out: dict[str, float]) -> None:
        done.append(work)
        out.update(vms=farm.size, first_200=float(len(done)))
        if len(done) == 2:
            raise RuntimeError("the simulator exited")
        out["churn_match"] = 1.0

    monkeypatch.setattr(scale, "Farm", FakeFarm)
    monkeypatch.setattr(scale, "one_run", one_run)
    return done


def test_one_farm_serves_every_run_of_a_size_and_a_failed_run_is_reported(
        runs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert scale.main(["--sizes", "1000,4000", "--runs", "3"]) == 1
    out = capsys.readouterr().out
    assert FakeFarm.started == [1000, 4000] and FakeFarm.stopped == [1000, 4000]
    assert len(runs) == 6
    assert "failed: 1000 VMs run 2: RuntimeError('the simulator exited')" in out
    first = next(line for line in out.splitlines() if "serve start" in line)
    assert "2.0 s (1.0 s–3.0 s)" in first  # the failed run's first figure is kept
    churn = next(line for line in out.splitlines() if "after churn" in line)
    assert "| 2 of 2 " in churn and "| 3 of 3 " in churn  # the failed run never got there
    assert "took " in out.splitlines()[0]


def test_fresh_farms_start_one_farm_per_run(runs: list[Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert scale.main(["--sizes", "1000", "--runs", "3", "--fresh-farms"]) == 1
    assert FakeFarm.started == [1000] * 3 and FakeFarm.stopped == [1000] * 3
