"""The fairness figure of `bench.queue_replay`: Jain's index over each owner's VM-time held
divided by its max-min fair share while the farm is contended."""

from __future__ import annotations

import pytest

from bench.queue_replay import Ask, Fairness, Farm, jain, water_fill


def test_max_min_fair_shares() -> None:
    assert water_fill(10, {"a": 2, "b": 20, "c": 20}) == {"a": 2, "b": 4, "c": 4}
    assert water_fill(10, {"a": 3, "b": 3}) == {"a": 3, "b": 3}  # room for both
    assert water_fill(9, {"a": 9, "b": 9, "c": 9}) == {"a": 3, "b": 3, "c": 3}


def test_an_owner_kept_out_of_its_share_lowers_the_index() -> None:
    """A farm of 10: `burst` holds all 10 while `small` waits for 2. Its fair share was 2:
    x(small) = 0 and x(burst) = 10 / 8; the index says one of two owners was served."""
    farm = Farm(10, running=[(100.0, "burst", 10)])
    f = Fairness(10)
    f.observe(0.0, farm, [], [])
    f.observe(50.0, farm, [Ask("s", "small", 0.0, 2, 60.0)], [])
    assert f.ratios() == {"burst": pytest.approx(10 / 8), "small": 0.0}
    assert f.index() == pytest.approx(0.5)
    fair = Fairness(10)  # the same demand served by shares: 8 and 2
    fair.observe(0.0, farm, [], [])
    fair.observe(50.0, Farm(10, running=[(100.0, "burst", 8), (100.0, "small", 2)]),
                 [Ask("b", "burst", 0.0, 2, 60.0)], [])
    assert fair.index() == pytest.approx(1.0)


def test_no_contention_is_not_counted() -> None:
    f = Fairness(10)
    f.observe(0.0, Farm(10), [], [])
    f.observe(60.0, Farm(10, running=[(100.0, "a", 3)]), [Ask("x", "b", 0.0, 2, 60.0)], [])
    assert f.ratios() == {} and f.index() == 1.0 == jain([])


def test_a_static_pool_at_equal_idle_hours() -> None:
    from bench.queue_replay import equal_idle

    static = [(0.0, 60.0, 0.0), (0.7, 60.0, 40.0), (0.9, 60.0, 80.0)]
    assert equal_idle(20.0, static) == pytest.approx(0.35)
    assert equal_idle(60.0, static) == pytest.approx(0.8)
    assert equal_idle(100.0, static) is None  # beyond the sizes measured
