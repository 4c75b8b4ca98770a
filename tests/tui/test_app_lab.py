"""The TUI against a real 3-node lab (`harepl lab`, fast profile: real daemons, Raft, LRMs,
witness services): it shows the cluster as the daemons report it, and a migration asked
in the TUI really moves the service (the witness ledger says where it runs)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harepl.runtime.api.client import ApiClient
from harepl.runtime.lab import up
from tests.cluster.labtools import Cluster
from tests.support.witness_check import violations
from tests.tui.conftest import until
from tests.tui.test_app import SIZE, rows, select_service, status
from tui.app import HareplApp
from tui.screens import PickScreen

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]
TRIES = 3000    # x 0.05 s pauses: a bound against hangs only, not a speed claim


@pytest.fixture
def lab_cluster() -> Iterator[Cluster]:
    lab_dir = Path(tempfile.mkdtemp(prefix="htl-", dir="/tmp"))   # short: AF_UNIX path limit
    wdir = Path(tempfile.mkdtemp(prefix="htw-", dir="/tmp"))
    (wdir / "locks").mkdir()
    lab = up(lab_dir, 3, "fast", timeout_s=60)
    cluster = Cluster(lab, wdir)
    try:
        yield cluster
    finally:
        lab.down()
        bad = violations(cluster.ledger)
        shutil.rmtree(lab_dir, ignore_errors=True)
        shutil.rmtree(wdir, ignore_errors=True)
        assert not bad, f"witness violations: {bad}"


def test_tui_on_a_real_lab_shows_and_migrates(lab_cluster: Cluster) -> None:
    c = lab_cluster
    c.add_exec("node1", "exec:tui", "node2")
    c.wait_running("exec:tui", node="node2")

    async def go() -> None:
        client = ApiClient(str(c.lab.node("node3").api_socket), timeout_s=5.0)
        app = HareplApp(client, interval_s=0.3)
        async with app.run_test(size=SIZE) as pilot:
            async def wait(cond: Any, what: str) -> None:
                await until(pilot, cond, what, tries=TRIES)

            await wait(lambda: rows(app, "services").get("exec:tui", [None])[1:3] == ["node2", "started"],
                       "exec:tui started on node2 in the table")
            await wait(lambda: [r[1] for r in rows(app, "nodes").values()] == ["online"] * 3,
                       "three nodes online")
            header = app.header.plain
            assert "quorum: OK" in header and "nodes: 3/3 online" in header
            assert "api node: node3" in header
            assert rows(app, "nodes")["node2"][2] == "active"     # its LRM runs a service
            select_service(app, "exec:tui")
            await pilot.press("m")
            assert isinstance(app.screen, PickScreen)
            assert [key for key, _ in app.screen.choices] == ["node1", "node3"]
            await pilot.press("down", "enter", "y")
            await wait(lambda: status(app).plain.startswith("migrate exec:tui to node3: done"), "API result")
            await wait(lambda: rows(app, "services")["exec:tui"][1:3] == ["node3", "started"],
                       "exec:tui started on node3 in the table")
            seen = [str(e["detail"].get("text")) for e in app.events.kept if e["op"] == "observed"]
            # the 'migrate' state may last less than a refresh; the node change is always seen
            assert "service 'exec:tui': node changed from 'node2' to 'node3'" in seen

    asyncio.run(go())
    assert c.wait_running("exec:tui", node="node3") == "node3"      # the witness really moved
    assert [e["node"] for e in c.events("exec:tui") if e["event"] == "start"] == ["node2", "node3"]
