"""Fixtures for tests that start real brokers, gateways and consumers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rig import Rig


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[type[Rig]]:
    """Build rigs that are torn down after the test, whatever happens."""
    made: list[Rig] = []

    class _Rig(Rig):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(tmp_path, **kwargs)  # type: ignore[arg-type]
            made.append(self)

    yield _Rig
    for rig in made:
        rig.close()
