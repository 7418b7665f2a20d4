from collections.abc import Iterator

import pytest

from tests.support.fakes.http import FakeHTTP


@pytest.fixture
def fake() -> Iterator[FakeHTTP]:
    server = FakeHTTP()
    try:
        yield server
    finally:
        server.close()
