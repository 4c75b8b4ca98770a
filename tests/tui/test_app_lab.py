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

from harepl.runtime.lab import up
from tests.cluster.labtools import Cluster
from tests.support.witness_check import violations
from tests.tui.conftest import until
from tests.tui.test_app import SIZE, health, rows, select_service, status
from tui.app import HareplApp
from tui.screens import PickScreen
from tui.source import LiveSource

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


def test_tui_on_a_real_lab_migrates_and_survives_its_api_node(lab_cluster: Cluster) -> None:
    """Shows the lab as its daemons report it; a migration asked in the TUI is followed
    until the service really runs on the target (the witness ledger agrees); then the
    daemon whose API the TUI reads is killed: the TUI says so and reads through another
    member."""
    c = lab_cluster
    c.add_exec("node1", "exec:tui", "node2")
    c.wait_running("exec:tui", node="node2")

    async def go() -> None:
        app = HareplApp(LiveSource([str(c.lab.node("node3").api_socket)], timeout_s=5.0), interval_s=0.3)
        async with app.run_test(size=SIZE) as pilot:
            async def wait(cond: Any, what: str) -> None:
                await until(pilot, cond, what, tries=TRIES)

            await wait(lambda: rows(app, "services").get("exec:tui", [None] * 4)[2:4] == ["● started", "node2"],
                       "exec:tui started on node2 in the table")
            await wait(lambda: [r[1] for r in rows(app, "nodes").values()] == ["● online"] * 3,
                       "three nodes online")
            assert health(app).startswith("✔ quorate") and "nodes 3/3 online" in health(app)
            assert health(app).endswith("via node3")
            assert rows(app, "nodes")["node2"][2:5] == ["● active", "active", "● armed"]
            select_service(app, "exec:tui")
            await pilot.press("m")
            assert isinstance(app.screen, PickScreen)
            assert [key for key, _ in app.screen.choices] == ["node1", "node3"]
            await pilot.press("down", "enter", "y")
            await wait(lambda: status(app).plain.startswith("migrate exec:tui to node3: done: exec:tui is "
                                                            "started on node3"), "the followed outcome")
            assert rows(app, "services")["exec:tui"][2:4] == ["● started", "node3"]
            # the API node dies: said at once, read through another member
            c.lab.kill("node3")
            await wait(lambda: health(app).endswith("via node1") or health(app).endswith("via node2"),
                       "reconnected through another member")
            assert status(app).plain.startswith("reconnected through ")
            await wait(lambda: "node3" in health(app) and "fenced/unknown" in health(app),
                       "node3 seen as lost by the CRM")

    asyncio.run(go())
    assert c.wait_running("exec:tui", not_on="node3") in ("node1", "node2")     # recovered after the fence
