from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dynvm.api import create_app
from tests.api.stub import StubCore


@pytest.fixture
def core() -> StubCore:
    return StubCore()


@pytest.fixture
def app(core: StubCore) -> Flask:
    return create_app(service=core)  # type: ignore[arg-type]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
