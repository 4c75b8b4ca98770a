"""Simulation mode: the same screens and actions on the real core in the simulator
(`harepl tui --sim DIR`), with its clock and per-node power and network switches."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from harepl.cli.main import cli
from tests.tui.conftest import settle, until
from tests.tui.test_app import health, rows, run, select_service, status
from tui.screens import HelpScreen, PickScreen
from tui.simcontrol import SimApp
from tui.simsource import SimSource

SCENARIO = Path(__file__).parent / "sim-3nodes"
SIZE = (160, 40)


def sim_app(read_only: bool = False) -> SimApp:
    return SimApp(SimSource.from_folder(SCENARIO, "default"), interval_s=3600, read_only=read_only)


async def rounds(pilot, n: int) -> None:  # type: ignore[no-untyped-def]
    """n rounds, read every 5 (as the running clock does, a refresh per few rounds)."""
    app = pilot.app
    for i in range(n):
        app.sim.step(1)
        if i % 5 == 4 or i == n - 1:
            app.action_refresh()
            await settle(pilot)


def test_source_speaks_the_api_shapes() -> None:
    source = SimSource.from_folder(SCENARIO, "default")
    source.step(20)
    snap = source.fetch()
    assert snap.quorate and snap.master_node == "node1"
    assert [n["status"] for n in snap.nodes] == ["online"] * 3
    assert {sid: sd["state"] for sid, sd in snap.manager_status["service_status"].items()} == {
        "ct:103": "started", "vm:101": "started", "vm:102": "started", "vm:104": "stopped"}
    assert snap.watchdog == {"node1": "armed", "node2": "armed", "node3": "armed"}
    assert set(snap.lease_age or {}) == {"node1", "node2", "node3"}
    assert any("got lock 'ha_manager_lock'" in e["detail"]["text"] for e in source.events(None))


def test_sim_screens_clock_and_a_followed_migration() -> None:
    async def go() -> None:
        app = sim_app()
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert app.title == "harepl simulator"
            await rounds(pilot, 20)
            assert rows(app, "services")["vm:101"][1:4] == ["● started", "● started", "node1"]
            assert "sim t=" in health(app) and health(app).startswith("✔ quorate │ master node1")
            # the clock: one round with '.', run and pause with Space
            t0 = app.sim.now
            await pilot.press("full_stop")
            await settle(pilot)
            assert app.sim.now > t0
            await pilot.press("space")
            assert app.running
            await until(pilot, lambda: app.sim.now > t0 + 3, "the clock runs")
            await pilot.press("space")
            assert not app.running and "paused" in status(app).plain
            await settle(pilot)
            # an action: queued in the simulated CRM, followed while the clock runs
            select_service(app, "vm:101")
            await pilot.press("m", "enter", "y")       # node2
            await settle(pilot)
            assert "waiting for the cluster" in status(app).plain and "clock paused" in status(app).plain
            await pilot.press("space")
            await until(pilot, lambda: status(app).plain.startswith("migrate vm:101 to node2: done: vm:101 is "
                                                                    "started on node2"), "the migration's outcome")
            await pilot.press("space")
            assert rows(app, "services")["vm:101"][3] == "node2"
            assert rows(app, "services")["vm:101"][8] == "arrived from node1"

    run(go())


def test_sim_power_switch_fences_and_recovers() -> None:
    async def go() -> None:
        app = sim_app()
        async with app.run_test(size=SIZE) as pilot:
            await rounds(pilot, 20)
            await pilot.press("p")
            picker = app.screen
            assert isinstance(picker, PickScreen)
            assert [key for key, _ in picker.choices] == ["node1 off", "node2 off", "node3 off"]
            await pilot.press("down", "down", "enter")                   # node3 off
            assert status(app).plain.startswith("power of node3 switched off")
            await rounds(pilot, 40)
            assert "node3 power off" in health(app)
            assert rows(app, "services")["ct:103"][3] != "node3"         # recovered elsewhere
            assert rows(app, "services")["ct:103"][8] == "recovered from node3"
            assert rows(app, "nodes")["node3"][4] == "○ closed"
            lines = [e["detail"]["text"] for e in app.events.kept if e["op"] == "simulator"]
            assert any("recover service 'ct:103' from fenced node 'node3'" in line for line in lines)
            # network: cut node2 as well: the cluster loses quorum; an action is refused
            await pilot.press("w", "down", "enter")
            await rounds(pilot, 2)
            assert "✖ NO QUORUM" in health(app)
            select_service(app, "vm:102")
            await pilot.press("d", "y")
            await settle(pilot)
            assert status(app).plain == ("disable vm:102 refused: no quorum or store unavailable: "
                                         "cluster not ready - no quorum (simulated)")

    run(go())


def test_sim_refusals_and_help() -> None:
    async def go() -> None:
        app = sim_app(read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await rounds(pilot, 10)
            select_service(app, "vm:101")
            await pilot.press("m")
            assert app.screen is app.default_screen and "read-only" in status(app).plain
            await pilot.press("p")
            assert app.screen is app.default_screen and "read-only" in status(app).plain
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            assert "run / pause the clock" in str(app.screen.query_one("#help-text").render())

    run(go())
    source = SimSource.from_folder(SCENARIO, "default")
    source.step(10)
    source.sim.hw.manager_status["service_status"]["vm:101"]["state"] = "error"
    from harepl.runtime.api.client import ApiClientError
    try:
        source.request("POST", "/resources/vm:101/migrate", {"node": "node2"})
    except ApiClientError as exc:
        assert exc.status == 409 and "error state" in exc.message
    else:
        raise AssertionError("an error-state service was migrated")


def test_cli_sim_option() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["tui", "--help"])
    assert "--sim" in result.output and "--read-only" in result.output
    result = runner.invoke(cli, ["tui", "--sim", "/nonexistent-scenario"])
    assert result.exit_code == 2 and "not a directory" in result.output and "Traceback" not in result.output


def test_save_as_scenario_folder(tmp_path: Path) -> None:
    async def go() -> None:
        app = sim_app()
        async with app.run_test(size=SIZE) as pilot:
            await rounds(pilot, 20)
            app.sim.hardware("network node2 off")
            await rounds(pilot, 5)
            await pilot.press("S")
            box = app.screen.query_one("#path")
            box.value = str(tmp_path / "saved")                        # type: ignore[attr-defined]
            await pilot.press("enter")
            await settle(pilot)
            assert status(app).plain.startswith(f"saved t={app.sim.now:.1f}s as scenario folder {tmp_path / 'saved'}")
    run(go())
    reopened = SimSource.from_folder(tmp_path / "saved", "default")
    assert reopened.sim.hw.nodes["node2"].network == "off"
    assert set(reopened.sim.hw.service_config) == {"vm:101", "vm:102", "ct:103", "vm:104"}
    reopened.step(5)
    assert reopened.fetch().master_node == "node1"


def test_sim_add_resource() -> None:
    from harepl.runtime.api.client import ApiClientError

    source = SimSource.from_folder(SCENARIO, "default")
    source.step(10)
    source.request("POST", "/resources", {"sid": "vm:150", "node": "node2", "state": "started"})
    source.step(10)
    assert source.fetch().service_status("vm:150")["state"] == "started"
    try:
        source.request("POST", "/resources", {"sid": "vm:150", "node": "node2"})
    except ApiClientError as exc:
        assert exc.status == 409
    else:
        raise AssertionError("added twice")
