"""Core errors carry data; only the API turns them into status codes and words."""

from __future__ import annotations

import pytest

from dynvm.api.errors import STATUS, detail_of, status_of
from dynvm.core import errors as core_errors
from dynvm.core.errors import DynvmError, NoCapacity


def test_no_capacity_carries_what_was_asked_and_what_was_there() -> None:
    exc = NoCapacity(asked=5, os="centos", available=2, unreachable=[3, 4])
    assert (exc.asked, exc.os, exc.available, exc.unreachable) == (5, "centos", 2, [3, 4])
    assert detail_of(exc) == ("No capacity is available! 5 centos VM(s) asked, 2 available "
                              "(xenhost3, xenhost4 unreachable)")
    assert status_of(exc) == 503


def test_a_bare_message_gets_the_legacy_sentence() -> None:
    assert detail_of(NoCapacity("Error: 3 asked, 0 available")) == \
        "No capacity is available! 3 asked, 0 available"


@pytest.mark.parametrize("cls", [c for c in vars(core_errors).values()
                                 if isinstance(c, type) and issubclass(c, DynvmError)
                                 and c is not DynvmError])
def test_every_core_error_has_a_status_in_the_api_and_none_of_its_own(cls: type) -> None:
    assert cls in STATUS
    assert not hasattr(cls, "status")
