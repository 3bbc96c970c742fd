"""Suite-wide hooks: a test that starts `dynvm serve` must say so with its `served` mark."""

from __future__ import annotations

import os

import pytest

# Hypothesis runs the plugins other packages register for it when it is imported: trio's
# (installed for selenium) imports trio, ~0.1 s of CPU in every worker, for trio code
# that dynvm does not have.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")

from testbed import serving
from tests.ordering import spread


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture of the test is set up: a module fixture may be the one that serves.
    serving.may_serve = item.get_closest_marker("served") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Only in a pytest-xdist worker: each collects the same list and orders it the same way.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items[:] = spread(items)
