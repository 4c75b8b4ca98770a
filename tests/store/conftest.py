from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.localcluster import Cluster


@pytest.fixture
def make_cluster(tmp_path) -> Iterator:  # type: ignore[no-untyped-def]
    made: list[Cluster] = []

    def make(size: int, extra_args: list[str] | None = None, start: bool = True) -> Cluster:
        c = Cluster(str(tmp_path / f"c{len(made)}"), size, extra_args=extra_args or [])
        os.makedirs(c.root, exist_ok=True)
        made.append(c)
        if start:
            c.start_all()
        return c

    yield make
    for c in made:
        c.stop_all()
