import contextlib
from collections.abc import Iterator

import pytest

from tests.support.fakes.http import FakeHTTP


@pytest.fixture
def fake() -> Iterator[FakeHTTP]:
    with contextlib.closing(FakeHTTP()) as server:
        yield server
