"""The `netcluster` fixture: a real 3-node cluster in network namespaces (see netlab.py),
`fast` profile, seen through tests/cluster's `Cluster` helpers (ha-manager, API, ledger).

Needs root and `ip` (iproute2); both exist here and in CI. Without them the fixture fails
with the exact error: a missing namespace harness must not pass as a skip.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.labtools import Cluster
from tests.netns.netlab import NetnsLab, Topology
from tests.support.witness_check import violations


class NetCluster(Cluster):
    lab: NetnsLab

    @property
    def topo(self) -> Topology:
        return self.lab.topo


@pytest.fixture
def netcluster(request: pytest.FixtureRequest) -> Iterator[NetCluster]:
    marker = request.node.get_closest_marker("timing")
    overrides = dict(marker.kwargs) if marker else {}
    # short paths: AF_UNIX socket paths are limited to 107 bytes
    lab_dir = Path(tempfile.mkdtemp(prefix="hn-", dir="/tmp"))
    wdir = lab_dir / "witness"
    (wdir / "locks").mkdir(parents=True)
    topo = Topology(3)
    lab = NetnsLab(lab_dir, topo)
    failed = True
    try:
        topo.setup()
        lab.create(3, "fast", overrides)
        for node in lab.nodes:
            lab.start(node.name)
        lab.wait_quorate(timeout_s=60)
        c = NetCluster(lab, wdir)
        yield c
        failed = bool(getattr(request.node, "rep_call", None) and request.node.rep_call.failed)
    finally:
        try:
            if lab.state:
                lab.down()
        finally:
            errors = topo.teardown()
            bad = violations(wdir / "ledger.jsonl")
            if failed or bad:
                print(f"netns lab kept for inspection: {lab_dir}")
            else:
                shutil.rmtree(lab_dir, ignore_errors=True)
            assert not errors, f"netns teardown: {errors}"
            assert not bad, f"witness violations: {bad}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timing(**overrides): lab timing overrides for the netcluster fixture")
    config.addinivalue_line("markers", "netns: real network namespaces (root, iproute2)")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
