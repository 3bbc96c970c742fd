"""Rules that share compiled URL builders build the URLs werkzeug's own rules build."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, url_for
from werkzeug.routing import Map, Rule

from dynvm.api import create_app
from dynvm.api.routing import SharedBuilderRule
from tests.api.stub import StubCore

# (rule, defaults, values to build with)
CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = [
    ("/static/path", None, {}),
    ("/static/path", None, {"q": "a b", "n": 3}),  # unknown values become the query
    ("/vms/<name>", None, {"name": "ci-7"}),
    ("/vms/<name>", None, {"name": "a/b c%", "x": "1"}),
    ("/vms/<name>/snapshots/<snap>", None, {"name": "n", "snap": "s"}),
    ("/count/<int:n>", None, {"n": 12}),
    ("/list", {"os": None}, {}),
    ("/list/<os>", {"state": "all"}, {"os": "centos"}),
    ("/page/<int:n>", {"n": 1}, {}),  # a default fills a URL part: compiled as werkzeug does
    ("/page/<int:n>", {"n": 2}, {}),
    ("/path/<path:rest>", None, {"rest": "x/y/z"}),
]


def build(rule_class: type[Rule], rule: str, defaults: dict[str, Any] | None,
          values: dict[str, Any]) -> str:
    m = Map([rule_class(rule, endpoint="e", defaults=defaults)])
    return m.bind("dynvm.test").build("e", values)


@pytest.mark.parametrize(("rule", "defaults", "values"), CASES)
def test_same_urls_as_werkzeug(rule: str, defaults: dict[str, Any] | None,
                               values: dict[str, Any]) -> None:
    ours = build(SharedBuilderRule, rule, defaults, values)
    assert ours == build(Rule, rule, defaults, values)
    assert ours == build(SharedBuilderRule, rule, defaults, values)  # the shared builder


def test_a_default_in_the_url_is_never_shared() -> None:
    assert build(SharedBuilderRule, "/page/<int:n>", {"n": 1}, {}) == "/page/1"
    assert build(SharedBuilderRule, "/page/<int:n>", {"n": 2}, {}) == "/page/2"


def test_two_apps_share_their_builders_and_each_builds_its_own_urls() -> None:
    first, second = create_app(StubCore()), create_app(StubCore())  # type: ignore[arg-type]
    pairs = list(zip(first.url_map.iter_rules(), second.url_map.iter_rules(), strict=True))
    assert len(pairs) > 40
    for a, b in pairs:
        assert a.rule == b.rule and a is not b
        assert a._build.__func__ is b._build.__func__  # type: ignore[attr-defined]
        assert a._build.__self__ is a and b._build.__self__ is b  # type: ignore[attr-defined]
    # Each rule's builder is bound to that rule: its own converters, its own map.
    for app in (first, second):
        assert isinstance(app, Flask)
        with app.test_request_context():
            assert url_for("v1.get_vm", name="ci 1") == "/api/v1/vms/ci%201"
            assert url_for("legacy.getservers", name="a", count=2) == "/getservers/a?count=2"
