"""Survives the cluster: when the member whose API the TUI reads dies or loses quorum,
the TUI says so at once and reads through another member (found in the lab directory,
DIR/<node>/api.sock, as `harepl lab` lays it out), without blocking the UI."""

from __future__ import annotations

from textual import events

from tests.tui.conftest import Member, app_for, settle, until
from tests.tui.test_app import SIZE, health, rows, run, select_service, status
from tui.app import SourceTrouble
from tui.screens import HelpScreen
from tui.source import LiveSource, lab_sockets


def test_lab_sockets_are_the_other_members(members: dict[str, Member]) -> None:
    first, second = members["node1"].socket_path, members["node2"].socket_path
    assert lab_sockets(first) == [second]
    assert LiveSource([first]).order == [first, second]


def test_dead_api_node_switches_to_another_member(members: dict[str, Member]) -> None:
    async def go() -> None:
        app = app_for(members["node1"].socket_path)
        seen: list[str] = []
        async with app.run_test(size=SIZE, message_hook=lambda m: seen.append(m.line)
                                if isinstance(m, SourceTrouble) else None) as pilot:
            await settle(pilot)
            assert health(app).endswith("via node1")
            members["node1"].kill()
            await pilot.press("g")
            await settle(pilot)
            # said at once (before the other member answered), then reconnected
            assert seen and seen[0].startswith(f"API at {members['node1'].socket_path} failed (cannot reach")
            assert status(app).plain == f"reconnected through {members['node2'].socket_path}"
            assert health(app).startswith("✔ quorate") and health(app).endswith("via node2")
            assert app.source.target == members["node2"].socket_path
            # and actions go to the member that answers
            select_service(app, "exec:web")
            await pilot.press("d", "y")
            await settle(pilot)
            assert members["node2"].client.get("/resources/exec:web")["state"] == "disabled"
            assert "accepted" in status(app).plain

    run(go())


def test_quorum_loss_switches_to_a_quorate_member(members: dict[str, Member]) -> None:
    async def go() -> None:
        app = app_for(members["node1"].socket_path)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            members["node1"].quorate = False
            await pilot.press("g")
            await settle(pilot)
            assert health(app).endswith("via node2") and app.problem is None
            assert status(app).plain == f"reconnected through {members['node2'].socket_path}"
            # every member without quorum: it says so, and keeps reading
            members["node2"].quorate = False
            await pilot.press("g")
            await settle(pilot)
            assert health(app).startswith("✖ node2 has no quorum")
            assert "✖ NO QUORUM" in health(app)

    run(go())


def test_every_member_dead_keeps_the_ui_answering(members: dict[str, Member]) -> None:
    """The refresh runs in a worker: keys are answered while no member answers."""
    async def go() -> None:
        app = app_for(members["node1"].socket_path, interval_s=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: bool(rows(app, "services")), "first refresh")
            for m in members.values():
                m.kill()
            await until(pilot, lambda: health(app).startswith("✖"), "the failure is shown")
            # a key posted as the terminal would, answered (its screen up) while the
            # refreshes keep failing (pilot.press would also wait for the process to idle).
            # How fast is measured in bench/tui_bench.py, never asserted here.
            app.post_message(events.Key("question_mark", "?"))
            await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
            assert not health(app).startswith("✔"), "the members came back: nothing was tested"
            await pilot.press("escape")
            assert set(rows(app, "services")) == {"exec:db", "exec:web"}      # the last data stays

    run(go())
