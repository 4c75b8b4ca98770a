"""The `netcluster` fixture: a real 3-node cluster in network namespaces (see netlab.py),
`fast` profile, seen through tests/cluster's `Cluster` helpers (ha-manager, API, ledger).

Needs root and `ip` (iproute2); both exist here and in CI. Without them the fixture fails
with the exact error: a missing namespace harness must not pass as a skip.

`@pytest.mark.data_tmpfs("32m")` puts every node's data_dir (Raft journal, snapshots,
agent run state) on a tmpfs of its own of that size, mounted before the daemons start
and unmounted after the lab is down: a test can fill one to make that node's disk full.
"""

from __future__ import annotations

import shutil
import subprocess
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
    tmpfs = request.node.get_closest_marker("data_tmpfs")
    mounted: list[Path] = []
    failed = True
    try:
        topo.setup()
        lab.create(3, "fast", overrides)
        if tmpfs is not None:
            for node in lab.nodes:
                data = node.dir / "data"
                data.mkdir(mode=0o700, exist_ok=True)
                mount_tmpfs(data, str(tmpfs.args[0]))
                mounted.append(data)
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
            for data in mounted:
                errors += umount(data)
            bad = violations(wdir / "ledger.jsonl")
            if failed or bad:
                print(f"netns lab kept for inspection: {lab_dir}")
            else:
                shutil.rmtree(lab_dir, ignore_errors=True)
            assert not errors, f"netns teardown: {errors}"
            assert not bad, f"witness violations: {bad}"


def mount_tmpfs(path: Path, size: str) -> None:
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:  # root is needed anyway: fail, as a missing netns harness does
        raise RuntimeError(f"mount tmpfs on {path}: {p.stderr.strip()}")


def umount(path: Path) -> list[str]:
    if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode == 0:
        return []
    p = subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True, timeout=30)
    return [] if p.returncode == 0 else [f"umount {path}: {p.stderr.strip()}"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timing(**overrides): lab timing overrides for the netcluster fixture")
    config.addinivalue_line("markers", "data_tmpfs(size): every node's data_dir on a tmpfs of that size")
    config.addinivalue_line("markers", "netns: real network namespaces (root, iproute2)")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
