"""The TUI driven by Textual's pilot against a real API server over the real store."""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

from textual.widgets import DataTable

from harepl.runtime.api.client import ApiClient
from harepl.runtime.api.local_backend import LocalApi
from tests.tui.conftest import settle, until, write_cluster
from tui.app import HareplApp
from tui.screens import ConfirmScreen, EventsScreen, PickScreen, ServiceScreen, StopScreen
from tui.widgets import ClusterHeader, ServiceDetail, StatusBar

SIZE = (160, 40)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def app_for(api: LocalApi) -> HareplApp:
    # interval: refreshes happen only when the test asks ('g') or after an action
    return HareplApp(ApiClient(api.socket_path, timeout_s=5.0), interval_s=3600)


def rows(app: HareplApp, table_id: str) -> dict[str, list[str]]:
    table: DataTable[Any] = app.query_one(f"#{table_id}", DataTable)
    return {str(key.value): [str(getattr(c, "plain", c)) for c in table.get_row(key)] for key in table.rows}


def status(app: HareplApp) -> StatusBar:
    return app.screen.query_one(StatusBar)


def select_service(app: HareplApp, sid: str) -> None:
    table = app.services_table
    table.move_cursor(row=table.get_row_index(sid), animate=False)


def events_of(client: ApiClient, op: str) -> list[str]:
    return [str(e["detail"]) for e in client.get("/events", limit=1000) if e["op"] == op and e["ok"]]


def test_tables_show_cluster(api: LocalApi) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            services = rows(app, "services")
            assert services == {"exec:db": ["exec:db", "node1", "started", "started", "front"],
                                "exec:web": ["exec:web", "node2", "started", "started", "-"]}
            nodes = rows(app, "nodes")
            assert [cells[:3] for cells in nodes.values()] == [
                ["node1 ★", "online", "active"], ["node2", "online", "active"], ["node3", "online", "-"]]
            assert nodes["node3"][3] == "-" and nodes["node1"][3].endswith("s")
            header = app.query_one(ClusterHeader).plain
            assert "quorum: OK" in header and "master: node1 (active)" in header
            assert "nodes: 3/3 online" in header and "services: 2" in header
            assert status(app).plain == f"connected to {api.socket_path}"
            # the detail panel follows the cursor
            select_service(app, "exec:web")
            await pilot.pause()
            detail = app.query_one("#detail", ServiceDetail).plain
            assert "exec:web" in detail and "param        command=sleep 1000" in detail
            assert "uid          u1" in detail and "resource_add" in detail

    run(go())


def test_disable_then_enable_reaches_store(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:web")
            await pilot.press("d")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await settle(pilot)
            assert client.get("/resources/exec:web")["state"] == "disabled"
            seq = [e["seq"] for e in client.get("/events", limit=1000) if e["op"] == "resource_update"][-1]
            assert status(app).plain == f"disable exec:web: done (seq={seq} sid=exec:web)"   # the API's result
            assert rows(app, "services")["exec:web"][3] == "disabled"
            # the cursor stayed on the service through the refresh
            assert app.selected_sid() == "exec:web"
            await pilot.press("e", "y")
            await settle(pilot)
            assert client.get("/resources/exec:web")["state"] == "started"

    run(go())


def test_cancelled_confirmation_sends_nothing(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:web")
            await pilot.press("x")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            await settle(pilot)
            assert "exec:web" in {r["sid"] for r in client.get("/resources")}
            assert status(app).plain == "remove exec:web from HA: cancelled"

    run(go())


def test_migrate_picks_a_node_and_queues_the_crm_command(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:web")
            await pilot.press("m")
            picker = app.screen
            assert isinstance(picker, PickScreen)
            assert [key for key, _ in picker.choices] == ["node1", "node3"]   # not where it runs
            await pilot.press("down", "enter")       # node3
            assert isinstance(app.screen, ConfirmScreen)
            assert app.screen.question == "Migrate exec:web to node3?"
            await pilot.press("y")
            await settle(pilot)
            assert any('"migrate exec:web node3"' in d for d in events_of(client, "crm_command_enqueue"))
            assert status(app).plain.startswith("migrate exec:web to node3: done")
            # relocate goes the same way
            await pilot.press("r", "enter", "y")
            await settle(pilot)
            assert any('"relocate exec:web node1"' in d for d in events_of(client, "crm_command_enqueue"))

    run(go())


def test_stop_with_timeout(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:db")
            await pilot.press("s")
            assert isinstance(app.screen, StopScreen)
            await pilot.press("ctrl+a", "ctrl+k", "x", "enter")   # not a number: stays, says why
            assert isinstance(app.screen, StopScreen)
            await pilot.press("1", "5", "enter")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await settle(pilot)
            assert any('"stop exec:db 15"' in d for d in events_of(client, "crm_command_enqueue"))

    run(go())


def test_node_maintenance(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            app.nodes_table.move_cursor(row=1, animate=False)    # node2
            await pilot.press("n")
            assert isinstance(app.screen, PickScreen)
            await pilot.press("enter", "y")                      # enable (offered first)
            await settle(pilot)
            assert any('"enable-node-maintenance node2"' in d for d in events_of(client, "crm_command_enqueue"))
            # once the CRM shows node2 in maintenance, disable is offered first
            write_cluster(api, {}, node_status={"node1": "online", "node2": "maintenance", "node3": "online"})
            await pilot.press("g")
            await settle(pilot)
            assert rows(app, "nodes")["node2"][1] == "maintenance"
            await pilot.press("n", "enter", "y")
            await settle(pilot)
            assert any('"disable-node-maintenance node2"' in d for d in events_of(client, "crm_command_enqueue"))

    run(go())


def test_remove_reaches_store(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:web")
            await pilot.press("x", "y")
            await settle(pilot)
            assert [r["sid"] for r in client.get("/resources")] == ["exec:db"]
            assert list(rows(app, "services")) == ["exec:db"]

    run(go())


def test_api_refusal_is_one_error_line(api: LocalApi, client: ApiClient) -> None:
    """A service in error state: the API refuses a migration (409); the TUI says so."""
    async def go() -> None:
        write_cluster(api, {"exec:web": {"state": "error", "node": "node2", "uid": "u1"}})
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:web")
            await pilot.press("m", "enter", "y")
            await settle(pilot)
            bar = status(app)
            assert bar.kind == "error"
            assert bar.plain == ("migrate exec:web to node1 failed: service 'exec:web' in error state, "
                                 "must be disabled and fixed first")
            assert not events_of(client, "crm_command_enqueue")

    run(go())


def test_unreachable_api_shows_error_and_keeps_running() -> None:
    async def go() -> None:
        missing = os.path.join(tempfile.mkdtemp(prefix="htui-"), "nothing.sock")
        app = HareplApp(ApiClient(missing, timeout_s=2.0), interval_s=3600)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            bar = status(app)
            assert bar.kind == "error"
            assert bar.plain.startswith(f"API error: cannot reach the harepl daemon at {missing}: ")
            assert "\n" not in bar.plain
            assert "cluster state unknown" in app.query_one(ClusterHeader).plain
            await pilot.press("d", "m", "n", "g")       # nothing selected, nothing to refresh: no crash
            await settle(pilot)
            assert app.is_running
            assert status(app).kind == "error"

    run(go())


def test_api_going_away_keeps_last_data(api: LocalApi) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            api.handle.close()
            await pilot.press("g")
            await settle(pilot)
            assert status(app).plain.startswith("API error: cannot reach the harepl daemon")
            assert "(stale)" in app.query_one(ClusterHeader).plain
            assert set(rows(app, "services")) == {"exec:db", "exec:web"}
            select_service(app, "exec:web")
            await pilot.press("d", "y")
            await settle(pilot)
            assert status(app).plain.startswith("disable exec:web failed: cannot reach the harepl daemon")
            assert app.is_running

    run(go())


def test_service_screen_and_history(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:db")
            await pilot.press("enter")
            screen = app.screen
            assert isinstance(screen, ServiceScreen) and screen.sid == "exec:db"
            text = screen.query_one(ServiceDetail).plain
            assert "group        front" in text and "resource_add" in text and "exec:web" not in text
            await pilot.press("d", "y")          # actions work from the detail screen too
            await settle(pilot)
            assert client.get("/resources/exec:db")["state"] == "disabled"
            assert "resource_update" in app.screen.query_one(ServiceDetail).plain
            await pilot.press("escape", "h")
            assert isinstance(app.screen, EventsScreen)
            table: DataTable[Any] = app.screen.query_one(DataTable)
            ops = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
            assert ops[0] == "resource_update"                     # newest first
            assert ops.count("resource_add") == 2 and "group_set" in ops
            assert "manager_status_set" not in ops               # routine writes left out
            assert any(e["op"] == "manager_status_set" for e in client.get("/events", limit=1000))

    run(go())


def test_periodic_refresh_picks_up_changes(api: LocalApi, client: ApiClient) -> None:
    """Nobody presses a key: the interval's worker reads what another operator changed."""
    async def go() -> None:
        app = HareplApp(ApiClient(api.socket_path, timeout_s=5.0), interval_s=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: set(rows(app, "services")) == {"exec:db", "exec:web"}, "first refresh")
            client.post("/resources", {"sid": "exec:new", "node": "node3", "state": "stopped",
                                       "params": {"command": "sleep 1"}})
            await until(pilot, lambda: "exec:new" in rows(app, "services"), "periodic refresh")
            assert rows(app, "services")["exec:new"] == ["exec:new", "node3", "queued", "stopped", "-"]

    run(go())


def test_requested_state_picker(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:web")
            await pilot.press("t")
            picker = app.screen
            assert isinstance(picker, PickScreen)
            assert picker.choices[0] == ("started", "started  (current)")
            await pilot.press("down", "down", "down", "enter", "y")     # ignored
            await settle(pilot)
            assert client.get("/resources/exec:web")["state"] == "ignored"

    run(go())


def test_history_notes_the_state_changes_it_sees(api: LocalApi) -> None:
    """The CRM's transitions live in its status writes; the TUI logs the ones it sees."""
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            write_cluster(api, {"exec:web": {"state": "migrate", "node": "node2", "target": "node3", "uid": "u3"},
                                "exec:db": {"state": "started", "node": "node1", "uid": "u2", "running": 1}},
                          node_status={"node1": "online", "node2": "online", "node3": "unknown"})
            await pilot.press("g")
            await settle(pilot)
            assert rows(app, "services")["exec:web"][2] == "migrate to node3"
            select_service(app, "exec:web")
            await pilot.press("h")
            table: DataTable[Any] = app.screen.query_one(DataTable)
            lines = [str(table.get_row_at(i)[3]) for i in range(table.row_count)
                     if str(table.get_row_at(i)[2]) == "observed"]
            assert lines == ["service 'exec:web': state changed from 'started' to 'migrate'",
                             "node 'node3': state changed from 'online' => 'unknown'"]
            await pilot.press("escape", "enter")
            assert "state changed from 'started' to 'migrate'" in app.screen.query_one(ServiceDetail).plain

    run(go())


def test_groups_and_rules_screen(api: LocalApi, client: ApiClient) -> None:
    client.post("/rules", {"type": "node-affinity", "rule": "pin", "resources": "exec:web", "nodes": "node3:2,node2",
                           "strict": 1})
    client.post("/rules", {"type": "resource-affinity", "rule": "apart", "resources": "exec:web,exec:db",
                           "affinity": "negative", "disable": 1, "comment": "keep apart"})

    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("c")
            await settle(pilot)
            screen = app.screen
            groups: DataTable[Any] = screen.query_one("#groups", DataTable)
            rules: DataTable[Any] = screen.query_one("#rules", DataTable)
            assert [[str(c) for c in groups.get_row_at(i)] for i in range(groups.row_count)] == [
                ["front", "node1:2,node2", "no", "no", ""]]
            assert [[str(c) for c in rules.get_row_at(i)] for i in range(rules.row_count)] == [
                ["apart", "resource-affinity", "exec:db,exec:web", "negative", "-", "disabled", "keep apart"],
                ["pin", "node-affinity", "exec:web", "node3:2,node2", "yes", "enabled", ""]]
            # refreshed with the app: a group changed elsewhere shows up
            client.put("/groups/front", {"restricted": 1})
            await pilot.press("g")
            await settle(pilot)
            assert str(groups.get_row_at(0)[2]) == "yes"

    run(go())


def test_filter_services(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("slash", "f", "r", "o", "n", "t")     # the group of exec:db; keys go to the box
            await pilot.pause()
            assert list(rows(app, "services")) == ["exec:db"]
            assert "1 of 2" in str(app.query_one("#services-title").render())
            await pilot.press("enter")
            assert app.focused is app.services_table
            await pilot.press("d", "y")                              # acts on the one shown
            await settle(pilot)
            assert client.get("/resources/exec:db")["state"] == "disabled"
            assert client.get("/resources/exec:web")["state"] == "started"
            assert list(rows(app, "services")) == ["exec:db"]      # the filter holds across refreshes
            await pilot.press("slash", "ctrl+a", "ctrl+k", "escape")
            await pilot.pause()
            assert set(rows(app, "services")) == {"exec:db", "exec:web"}

    run(go())


def test_history_failure_still_shows_the_cluster(tmp_path: Any) -> None:
    """A daemon that answers the state but not the history (a stand-in backend whose
    read_events fails as the real one does when its store is unavailable): the tables
    fill, the status line names the history's error."""
    from harepl.runtime.api import BackendUnavailable, serve_api
    from harepl.runtime.api.local_backend import LocalStoreBackend

    class NoHistory(LocalStoreBackend):
        def read_events(self, after_seq: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
            raise BackendUnavailable("history unavailable: store snapshot being installed")

    sock = os.path.join(tempfile.mkdtemp(prefix="htui-"), "api.sock")
    backend = NoHistory(tmp_path / "state.db", "node1")
    backend.submit({"op": "node_add", "node": "node1"})
    backend.submit({"op": "resource_add", "sid": "exec:x",
                    "config": {"type": "exec", "state": "started", "node": "node1", "max_restart": 1,
                               "max_relocate": 1, "failback": True, "params": {"command": "sleep 1"}}})
    handle = serve_api(backend, unix_path=sock)
    try:
        async def go() -> None:
            app = HareplApp(ApiClient(sock, timeout_s=5.0), interval_s=3600)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                assert list(rows(app, "services")) == ["exec:x"]
                assert status(app).plain == ("API error (history): history unavailable: "
                                             "store snapshot being installed")
                assert "(stale)" not in app.header.plain

        run(go())
    finally:
        handle.close()
        backend.close()


def test_main_screen_keys_do_nothing_in_dialogs_and_other_screens(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:web")
            await pilot.press("m")
            picker = app.screen
            await pilot.press("x", "d", "h")       # no second dialog, no history screen
            assert app.screen is picker
            await pilot.press("escape", "h")
            assert isinstance(app.screen, EventsScreen)
            await pilot.press("d", "x", "c")       # the history screen has no service actions
            await settle(pilot)
            assert isinstance(app.screen, EventsScreen)
            assert client.get("/resources/exec:web")["state"] == "started"
            assert {r["sid"] for r in client.get("/resources")} == {"exec:db", "exec:web"}

    run(go())
