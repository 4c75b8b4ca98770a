"""Real 3-node clusters on 127.0.0.1 (`harepl lab`, `fast` profile) for end-to-end tests.

Every test service is the witness (`tests/support/witness.py`): it holds an exclusive
flock named after the service and appends start/stop to one ledger per test; a second
instance records a violation. Each test's teardown and the session's end assert that
there are zero violations across the whole suite.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harepl.runtime.lab import up
from tests.cluster.labtools import Cluster
from tests.support.witness_check import violations


@pytest.fixture(scope="session")
def witness_root() -> Iterator[Path]:
    """One directory for every ledger of the session; zero violations asserted at the end."""
    root = Path(tempfile.mkdtemp(prefix="hw-", dir="/tmp"))
    yield root
    bad = []
    for ledger in sorted(root.glob("*/ledger.jsonl")):
        bad += violations(ledger)
    shutil.rmtree(root, ignore_errors=True)
    assert not bad, f"witness violations across the cluster suite: {json.dumps(bad)}"


@pytest.fixture
def cluster(witness_root: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    # a test may ask for other timings: @pytest.mark.timing(watchdog_s=6, ...)
    marker = request.node.get_closest_marker("timing")
    overrides = dict(marker.kwargs) if marker else {}
    # short paths: AF_UNIX socket paths are limited to 107 bytes
    lab_dir = Path(tempfile.mkdtemp(prefix="hl-", dir="/tmp"))
    wdir = witness_root / request.node.name[:40]
    (wdir / "locks").mkdir(parents=True)
    lab = up(lab_dir, 3, "fast", timeout_s=60, timing_overrides=overrides)
    c = Cluster(lab, wdir)
    try:
        yield c
    finally:
        lab.down()
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(f"lab kept for inspection: {lab_dir}")
        else:
            shutil.rmtree(lab_dir, ignore_errors=True)
        assert not violations(c.ledger), f"witness violations: {violations(c.ledger)}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timing(**overrides): lab timing overrides for the cluster fixture")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
