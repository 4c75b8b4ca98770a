"""A running daemon's data, sockets and logs are root-only (issue 4: "Data and secret
files are root-only"), including the Raft meta file that pysyncobj replaces by rename."""

from __future__ import annotations

import os
import stat

import pytest

from tests.cluster.labtools import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def test_store_files_of_a_running_daemon_are_root_only(cluster: Cluster) -> None:
    cluster.add_exec("node1", "exec:f", "node1")
    cluster.wait_running("exec:f", "node1")
    store = cluster.lab.node("node1").dir / "data" / "store"
    names = sorted(os.listdir(store))
    assert {"raft.journal", "raft.journal.meta"} <= set(names), names
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    for name in names:
        mode = stat.S_IMODE(os.stat(store / name).st_mode)
        assert mode & 0o077 == 0, f"{name}: {oct(mode)}"
