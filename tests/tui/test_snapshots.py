"""Snapshot tests (pytest-textual-snapshot): the main screen at 80x24 and 160x48 in the
normal, degraded (a node fenced), disarmed and read-only states, on fixed answers
(tests/tui/fakes.py), and the simulation mode on the simulator's virtual clock.

The SVGs live in __snapshots__/; after a deliberate change of the screen, look at the
report and accept with `pytest tests/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harepl.sim.runner import PROFILES, load_scenario
from tests.tui import fakes
from tui.app import HareplApp
from tui.simcontrol import SimApp
from tui.simsource import SimSource

SIZES = [(80, 24), (160, 48)]
SCENARIO = Path(__file__).parent / "sim-3nodes"


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Clock times on screen in UTC, whatever the machine's zone."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


async def settled(pilot: Any, refreshes: int = 0) -> None:
    app = pilot.app
    for _ in range(refreshes + 1):
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause()
        if refreshes:
            app.action_refresh()
    await app.workers.wait_for_complete()
    await pilot.pause()


def settle_after(refreshes: int) -> Callable[[Any], Any]:
    async def run_before(pilot: Any) -> None:
        await settled(pilot, refreshes)
    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_normal(snap_compare: Any, size: tuple[int, int]) -> None:
    app = HareplApp(fakes.FakeSource(fakes.normal()), interval_s=3600)
    assert snap_compare(app, terminal_size=size, run_before=settle_after(0))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_degraded_node_fenced(snap_compare: Any, size: tuple[int, int]) -> None:
    app = HareplApp(fakes.FakeSource(fakes.normal(), fakes.degraded()), interval_s=3600)
    assert snap_compare(app, terminal_size=size, run_before=settle_after(1))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_disarmed(snap_compare: Any, size: tuple[int, int]) -> None:
    app = HareplApp(fakes.FakeSource(fakes.normal(), fakes.disarmed()), interval_s=3600)
    assert snap_compare(app, terminal_size=size, run_before=settle_after(1))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_read_only(snap_compare: Any, size: tuple[int, int]) -> None:
    app = HareplApp(fakes.FakeSource(fakes.normal()), interval_s=3600, read_only=True)
    assert snap_compare(app, terminal_size=size, run_before=settle_after(0))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sim_mode_after_a_power_loss(snap_compare: Any, size: tuple[int, int]) -> None:
    source = SimSource(load_scenario(SCENARIO), PROFILES["default"], Path("tests/tui/sim-3nodes"))
    app = SimApp(source, interval_s=3600)

    async def run_before(pilot: Any) -> None:
        for i in range(30):
            source.step(1)
            if i % 5 == 4:
                await settled(pilot, 1)
        source.hardware("power node3 off")
        for i in range(40):
            source.step(1)
            if i % 5 == 4:
                await settled(pilot, 1)
        await settled(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
