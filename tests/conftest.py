from __future__ import annotations

import pytest
import structlog


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()
