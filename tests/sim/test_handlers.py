"""The simulator's handler table: every entry serves a message XAPI declares,
and takes the arguments the dispatcher passes for it."""

from __future__ import annotations

import inspect

import pytest

from dynvm.sim.dispatch import EXTRA_PARAMS, resolve
from dynvm.sim.handlers import HANDLERS


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_entry_names_a_declared_message(name: str) -> None:
    res = resolve(name)
    assert res is not None, f"{name} is no message of the datamodel"
    assert res.key == name


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_handler_takes_the_message_arguments(name: str) -> None:
    res = resolve(name)
    assert res is not None
    sig = inspect.signature(HANDLERS[name])
    ctx = object()
    most = len(res.spec.params) + len(EXTRA_PARAMS.get(name, ()))
    for count in {res.spec.min_params, most}:
        sig.bind(ctx, *([None] * count))  # TypeError when the handler's parameters differ
