"""URL rules whose builders are compiled once per process, not once per app.

Werkzeug turns every rule into two URL-builder functions by writing and
compiling Python code when the rule joins an app's map: about 0.4 ms a rule,
so ~25 ms of CPU for each app of ~60 routes. A served worker builds one app
and does not care; the test suite builds one per test and spent seconds on it.

A builder is a pure function of the rule's text, its parsed parts and the
names of its defaults: it reaches the rule's own converters and query
encoding through the `self` it is bound to when called. So equal keys can
share one function, and each rule binds it to itself as werkzeug does. A rule
whose defaults fill one of its own URL parts has that value folded into the
code (converted by that rule's converter): it is compiled as werkzeug does,
never shared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Flask
from werkzeug.routing import Rule

__all__ = ["App", "SharedBuilderRule"]

_Key = tuple[str, tuple[tuple[bool, str], ...], tuple[str, ...], bool]
_builders: dict[_Key, Callable[..., tuple[str, str]]] = {}
_lock = threading.Lock()


class SharedBuilderRule(Rule):
    """A `werkzeug.routing.Rule` that reuses the builders of an equal rule."""

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        defaults = self.defaults or {}
        trace = tuple(self._trace)
        if any(dynamic and name in defaults for dynamic, name in trace):
            return super()._compile_builder(append_unknown)
        key: _Key = (self.rule, trace, tuple(str(k) for k in defaults), append_unknown)
        with _lock:
            builder = _builders.get(key)
            if builder is None:
                builder = _builders[key] = super()._compile_builder(append_unknown)
        return builder


class App(Flask):
    """dynvm's Flask app: its routes share their compiled URL builders."""

    url_rule_class = SharedBuilderRule
