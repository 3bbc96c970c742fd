"""The workers' order of the suite spreads the slow modules evenly (tests/ordering.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.ordering import CHUNK, SERVED, cost, spread


@dataclass
class FakeDef:
    scope: str


@dataclass
class FakeInfo:
    name2fixturedefs: dict[str, list[FakeDef]] = field(default_factory=dict)


@dataclass
class FakeItem:
    nodeid: str
    served: bool = False
    _fixtureinfo: FakeInfo = field(default_factory=FakeInfo)

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "served" and self.served else None


def module(path: str, n: int, served: bool = False, scope: str = "function") -> list[FakeItem]:
    info = FakeInfo({"f": [FakeDef(scope)]})
    return [FakeItem(f"{path}::test_{k}", served, info) for k in range(n)]


def quarters(items: list[FakeItem]) -> list[float]:
    n = len(items)
    return [sum(cost(i) for i in items[k * n // 4:(k + 1) * n // 4]) for k in range(4)]


def suite() -> list[FakeItem]:
    # As collected: cheap modules first, the served ones together near the end.
    return (module("tests/api/test_a.py", 300) + module("tests/core/test_b.py", 300)
            + module("tests/service/test_s1.py", 6, served=True, scope="module")
            + module("tests/service/test_s2.py", 6, served=True, scope="module")
            + module("tests/service/test_s3.py", 6, served=True)
            + module("tests/service/test_s4.py", 6, served=True)
            + module("tests/store/test_c.py", 60, scope="module"))


def test_collection_order_leaves_the_slow_tests_in_one_share() -> None:
    # What the ordering is for: as collected, one worker's share holds every served test.
    shares = quarters(suite())
    assert max(shares) >= 24 * SERVED > 3 * min(shares)


def test_every_share_gets_its_part_of_the_slow_tests() -> None:
    shares = quarters(spread(suite()))
    assert max(shares) <= 2 * min(shares), shares


def test_the_same_tests_each_module_whole_in_its_own_order_unless_cheap() -> None:
    before = suite()
    after = spread(before)
    assert sorted(i.nodeid for i in after) == sorted(i.nodeid for i in before)
    # A module with a module-scoped fixture stays in one piece, in order.
    for path in ("tests/service/test_s1.py", "tests/store/test_c.py"):
        at = [k for k, i in enumerate(after) if i.nodeid.startswith(path)]
        assert at == list(range(at[0], at[0] + len(at)))
        assert [after[k].nodeid for k in at] == [i.nodeid for i in before
                                                 if i.nodeid.startswith(path)]
    # A long module of cheap function-scoped tests is dealt out in pieces, in order.
    cheap = [i.nodeid for i in after if i.nodeid.startswith("tests/api/test_a.py")]
    assert cheap == [f"tests/api/test_a.py::test_{k}" for k in range(300)]
    at = [k for k, i in enumerate(after) if i.nodeid.startswith("tests/api/test_a.py")]
    assert at != list(range(at[0], at[0] + len(at)))  # not one run: spread
    assert CHUNK < 300


def test_the_end_of_the_order_is_cheap() -> None:
    after = spread(suite())
    assert not any(i.served for i in after[-len(after) // 10:])
