"""Warm pools sized from demand (`dynvm.core.demand`): the Poisson rule over history."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from dynvm.core import demand
from dynvm.core.demand import HOUR, WEEK


def cdf(n: int, mean: float) -> float:
    return sum(math.exp(-mean) * mean ** k / math.factorial(k) for k in range(n + 1))


@given(st.floats(0.0, 40.0), st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_poisson_quantile_is_the_smallest_that_covers(mean: float, q: float) -> None:
    n = demand.poisson_quantile(mean, q)
    assert cdf(n, mean) >= q - 1e-9
    assert n == 0 or cdf(n - 1, mean) < q


def test_rate_weights_the_latest_week_most() -> None:
    now = 100 * WEEK + 5 * HOUR + 600  # ten minutes into an hour
    last = [now - WEEK + i for i in range(8)]  # 8 in this hour of last week
    older = [now - 4 * WEEK] * 8  # 8 in this hour four weeks ago
    elsewhere = [now - WEEK + HOUR, now - 2 * HOUR, now - 5 * WEEK]  # other hours, too old
    assert demand.rate(last + elsewhere, now) == 8 * 8 / 15 / HOUR
    assert demand.rate(older + elsewhere, now) == 8 * 1 / 15 / HOUR
    assert demand.rate(elsewhere, now) == 0.0


def test_arrivals_and_build_time_from_history() -> None:
    docs = [
        {"os": "centos", "handed_out_time": 10.0, "owner": "team-a", "build_started": 1.0,
         "create_duration_secs": 40},  # a warm VM handed out: asked for at 10
        {"os": "centos", "owner": "team-b", "build_started": 20.0, "create_duration_secs": 80},
        {"os": "centos", "owner": "", "build_started": 30.0, "create_duration_secs": 60},
        {"os": "centos", "owner": "team-c", "build_started": 40.0, "state": "failed",
         "create_duration_secs": 900},  # asked for, but its build time says nothing
        {"os": "windows", "owner": "team-a", "build_started": 50.0},
    ]
    assert sorted(demand.arrivals(docs, "centos", "")) == [10.0, 20.0, 40.0]
    assert demand.build_secs(docs, "centos") == 60.0
    assert demand.build_secs(docs, "windows") == demand.DEFAULT_BUILD_SECS


def test_target_within_min_and_max() -> None:
    now = 100 * WEEK + 600
    busy = [{"os": "centos", "owner": "ci", "build_started": now - WEEK + i,
             "create_duration_secs": 120} for i in range(300)]
    # 300 in this hour last week, none the weeks before: 300 x 8/15 = 160 an hour; a build
    # takes 2 min, during which 5.3 arrive on average; P(Poisson(5.3) <= 9) >= 95 %.
    assert demand.target(busy, "centos", now, low=0, high=50, ready_owner="") == 9
    assert demand.target(busy, "centos", now, low=0, high=4, ready_owner="") == 4
    assert demand.target([], "centos", now, low=2, high=4, ready_owner="") == 2
    assert demand.target(busy, "centos", now + HOUR, low=1, high=50, ready_owner="") == 1
