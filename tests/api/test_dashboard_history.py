"""The dashboard history's figures: owner search, summary per OS and the charts' series."""

from __future__ import annotations

from dynvm.api.dashboard_history import (
    MAX_POINTS,
    chart_series,
    history_csv,
    history_query,
    history_summary,
)

DAY = 86400.0
T0 = 1_700_000_000.0


def doc(name: str, t: float, *, os: str = "centos", owner: str | None = "team-a",
        build: float | None = 60.0, lived: float | None = 600.0, state: str = "deleted"):
    d = {"name": name, "username": name, "os": os, "state": state, "created_time": t,
         "create_duration_secs": build, "live_duration_secs": lived}
    if owner is not None:
        d["owner"] = owner
    return d


def test_owner_is_the_documents_owner_not_its_vm_name() -> None:
    docs = [doc("perf1", T0, owner="team-a"), doc("perf2", T0 + 1, owner="team-b"),
            doc("old1", T0 + 2, owner=None)]  # a document from before `owner`: its username
    assert [d["name"] for d in history_query(docs, owner="team-b")] == ["perf2"]
    assert [d["name"] for d in history_query(docs, owner="team")] == ["perf2", "perf1"]
    assert history_query(docs, owner="perf") == []
    assert [d["name"] for d in history_query(docs, owner="old1")] == ["old1"]
    lines = history_csv(docs).splitlines()
    assert lines[0].startswith("name,owner,username,")
    assert lines[1].startswith("perf1,team-a,perf1,")


def test_one_vm_is_a_point_on_a_time_axis() -> None:
    out = chart_series([doc("a", T0 + 17)])
    assert out["step"] == 300 and out["t"] == [int((T0 + 17) // 300 * 300)]
    assert out["series"]["created"] == {"centos": [1.0]}
    assert out["series"]["build_p50"] == {"centos": [60.0]}
    assert out["series"]["live_p50"] == {"centos": [10.0]}  # minutes


def test_a_day_of_history_is_charted_per_quarter_hour_with_gaps() -> None:
    docs = [doc(f"v{i}", T0 + i * 1800, build=float(30 + i)) for i in range(48)]
    docs.append(doc("w1", T0 + 3600, os="win2019", build=None, lived=None, state="active"))
    docs.append(doc("f1", T0 + 60, state="failed"))  # a failure built nothing
    out = chart_series(docs)
    assert out["step"] == 900
    n = len(out["t"])
    assert n <= MAX_POINTS and out["t"] == [out["t"][0] + i * 900 for i in range(n)]
    created = out["series"]["created"]["centos"]
    assert sum(created) == 48 and created.count(0.0) == n - 48
    assert [v for v in out["series"]["build_p50"]["centos"] if v is not None] == \
        [float(30 + i) for i in range(48)]
    assert out["series"]["created"]["win2019"].count(1.0) == 1
    assert set(out["series"]["build_p50"]["win2019"]) == {None}


def test_a_year_of_history_stays_within_the_point_budget() -> None:
    docs = [doc(f"v{i}", T0 + i * DAY) for i in range(365)]
    out = chart_series(docs)
    assert len(out["t"]) <= MAX_POINTS and out["step"] >= 3 * DAY
    assert sum(out["series"]["created"]["centos"]) == 365


def test_summary_per_os() -> None:
    docs = [doc("a", T0, build=10.0, lived=100.0), doc("b", T0 + 50, build=30.0, lived=300.0),
            doc("m", T0 + 20, build=20.0, lived=200.0),
            doc("c", T0 + 9, os="ubuntu"), doc("x", T0 + 99, state="failed")]
    rows = {r["os"]: r for r in history_summary(docs)}
    assert set(rows) == {"centos", "ubuntu"}
    assert rows["centos"]["created"] == 3 and rows["centos"]["build_p50"] == 20.0
    assert rows["centos"]["live_p50"] == 200.0
    assert (rows["centos"]["first"], rows["centos"]["last"]) == (T0, T0 + 50)
    assert chart_series([]) == {"step": 0, "t": [], "series": {}}
