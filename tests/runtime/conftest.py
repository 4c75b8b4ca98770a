from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harepl.store.client import Client
from tests.support.store import one_member_store


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    """A client of a quorate one-member Raft store (real sockets, real SQLite)."""
    node = one_member_store(tmp_path)
    yield Client(node)
    node.stop()
