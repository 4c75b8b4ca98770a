"""The TUI driven by Textual's pilot against a real API server over the real store:
what the main screen shows, and how it is navigated (actions: test_actions.py)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

from textual.widgets import DataTable

from harepl.runtime.api.client import ApiClient
from harepl.runtime.api.local_backend import LocalApi
from tests.tui.conftest import app_for, settle, until, write_cluster
from tui.app import HareplApp
from tui.screens import EventsScreen, HelpScreen, PickScreen, ServiceScreen
from tui.source import LiveSource
from tui.widgets import HealthBar, ServiceDetail, StatusBar

SIZE = (160, 40)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def rows(app: HareplApp, table_id: str) -> dict[str, list[str]]:
    table: DataTable[Any] = app.query_one(f"#{table_id}", DataTable)
    return {str(key.value): [str(getattr(c, "plain", c)) for c in table.get_row(key)] for key in table.rows}


def status(app: HareplApp) -> StatusBar:
    return app.screen.query_one(StatusBar)


def health(app: HareplApp) -> str:
    return app.query_one(HealthBar).plain


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
            assert services["exec:db"] == ["exec:db", "● started", "● started", "node1", "-", "-/1", "0/1",
                                           "-", "-", "-"]
            assert list(services) == ["exec:db", "exec:web"]
            nodes = rows(app, "nodes")
            assert [cells[:5] + cells[6:] for cells in nodes.values()] == [
                ["node1 ★", "● online", "● active", "active", "● armed", "1"],
                ["node2", "● online", "● active", "active", "● armed", "1"],
                ["node3", "● online", "-", "-", "-", "0"]]
            assert nodes["node1"][5].startswith("~") and nodes["node3"][5] == "-"   # LRM age stands in
            assert health(app).startswith("✔ quorate │ master node1 │ nodes 3/3 online │ fencing armed │ "
                                          "services 2: 2 started │ via node1")
            assert status(app).plain == f"connected to {api.socket_path}"
            # the detail panel follows the cursor
            select_service(app, "exec:web")
            await pilot.pause()
            detail = app.query_one("#detail", ServiceDetail).plain
            assert "exec:web" in detail and "param         command=sleep 1000" in detail
            assert "uid           u1" in detail and "service exec:web added on node2, requested started" in detail

    run(go())


def test_columns_grow_to_fit_values(api: LocalApi) -> None:
    """Widths follow the content on every refresh, not the first one only."""
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            write_cluster(api, {"exec:web": {"state": "request_start_balance", "node": "node2", "uid": "u9",
                                             "target": "node3"},
                                "exec:db": {"state": "started", "node": "node1", "uid": "u2", "running": 1}},
                          node_status={"node1": "online", "node2": "maintenance", "node3": "online"})
            await pilot.press("g")
            await settle(pilot)
            for table in (app.nodes_table, app.services_table):
                for column in table.ordered_columns:
                    longest = max(len(str(getattr(c, "plain", c))) for c in table.get_column(column.key))
                    assert column.get_render_width(table) >= longest + 2, (column.label, longest)
            total = sum(c.get_render_width(app.services_table) for c in app.services_table.ordered_columns)
            assert total <= 120       # every value whole at 120 columns

    run(go())


def test_events_in_plain_words(api: LocalApi, client: ApiClient) -> None:
    client.post("/rules", {"type": "node-affinity", "rule": "pin", "resources": "exec:web",
                           "nodes": "node3:2,node2"})
    client.post("/resources/exec:web/migrate", {"node": "node3"})

    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            write_cluster(api, {"exec:web": {"state": "migrate", "node": "node2", "target": "node3", "uid": "u3",
                                             "failed_nodes": ["node1"], "cmd": ["migrate", "node3"]},
                                "exec:db": {"state": "started", "node": "node1", "uid": "u2", "running": 1}},
                          node_status={"node1": "online", "node2": "online", "node3": "unknown"})
            await pilot.press("g")
            await settle(pilot)
            assert rows(app, "services")["exec:web"][2:9] == ["→ migrate", "node2", "node3", "-/1", "1/1",
                                                              "0.0s ago", "migrate asked"]
            select_service(app, "exec:web")
            await pilot.press("h")
            table: DataTable[Any] = app.screen.query_one(DataTable)
            lines = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
            assert lines[:2] == ["service exec:web: started → migrate on node2", "node node3: online → unknown"]
            assert "asked the CRM to migrate exec:web to node3" in lines
            assert "rule pin set: nodes node3:2,node2, resources exec:web, strict no, type node-affinity" in lines
            for line in lines:
                assert not any(bad in line for bad in ("{", "[", '"', "None", "#None")), line
            await pilot.press("escape", "enter")
            detail = app.screen.query_one(ServiceDetail).plain
            assert "pending cmd   migrate, node3" in detail and "failed on     node1" in detail, detail
            assert "#None" not in detail and "[" not in detail and "started → migrate" in detail

    run(go())


def test_agent_failure_and_last_change(api: LocalApi) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            write_cluster(api, {"exec:web": {"state": "error", "node": "node2", "uid": "u7"},
                                "exec:db": {"state": "started", "node": "node1", "uid": "u2", "running": 1}},
                          results={"node2": {"u7": {"sid": "exec:web", "state": "started", "exit_code": 7}}})
            await pilot.press("g")
            await settle(pilot)
            web = rows(app, "services")["exec:web"]
            assert web[2] == "✖ error" and web[8] == "exit 7 on node2" and web[9] == "exit 7 on node2"
            assert "services 2: 1 error, 1 started" in health(app)

    run(go())


def test_unreachable_api_shows_error_and_keeps_running() -> None:
    async def go() -> None:
        missing = os.path.join(tempfile.mkdtemp(prefix="htui-"), "nothing.sock")
        app = HareplApp(LiveSource([missing], timeout_s=2.0), interval_s=3600)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            bar = status(app)
            assert bar.kind == "error"
            assert bar.plain.startswith(f"no answer: {missing}: cannot reach the harepl daemon at {missing}: ")
            assert health(app).startswith(f"✖ {missing}: cannot reach")
            await pilot.press("d", "m", "n", "g")       # nothing selected, nothing to refresh: no crash
            await settle(pilot)
            assert app.is_running
            assert status(app).kind == "error"

    run(go())


def test_api_going_away_says_so_at_once_and_keeps_last_data(api: LocalApi) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            api.handle.close()
            await pilot.press("g")
            await settle(pilot)
            assert status(app).plain.startswith(f"no answer: {api.socket_path}: cannot reach the harepl daemon")
            bar = health(app)
            assert bar.startswith(f"✖ {api.socket_path}: cannot reach") and "data " in bar and " old)" in bar
            assert "master node1" in bar        # the last data stays, marked by its age
            assert set(rows(app, "services")) == {"exec:db", "exec:web"}
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
            assert "group         front" in text and "service exec:db added on node1" in text
            assert "exec:web" not in text
            await pilot.press("d", "y")          # actions work from the detail screen too
            await settle(pilot)
            assert client.get("/resources/exec:db")["state"] == "disabled"
            assert "service exec:db: requested state set to disabled" in app.screen.query_one(ServiceDetail).plain
            await pilot.press("escape", "h")
            assert isinstance(app.screen, EventsScreen)
            table: DataTable[Any] = app.screen.query_one(DataTable)
            lines = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
            assert lines[0] == "service exec:db: requested state set to disabled"    # newest first
            assert "group front set: nodes node1:2,node2, nofailback no, restricted no" in lines
            assert not any("wrote its status" in line for line in lines)             # routine writes left out

    run(go())


def test_periodic_refresh_picks_up_changes(api: LocalApi, client: ApiClient) -> None:
    """Nobody presses a key: the interval's worker reads what another operator changed."""
    async def go() -> None:
        app = app_for(api, interval_s=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: set(rows(app, "services")) == {"exec:db", "exec:web"}, "first refresh")
            client.post("/resources", {"sid": "exec:new", "node": "node3", "state": "stopped",
                                       "params": {"command": "sleep 1"}})
            await until(pilot, lambda: "exec:new" in rows(app, "services"), "periodic refresh")
            assert rows(app, "services")["exec:new"][:4] == ["exec:new", "○ stopped", "… queued", "node3"]

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
            assert [[str(getattr(c, "plain", c)) for c in rules.get_row_at(i)] for i in range(rules.row_count)] == [
                ["apart", "resource-affinity", "exec:db,exec:web", "negative", "-", "disabled", "keep apart"],
                ["pin", "node-affinity", "exec:web", "node3:2,node2", "yes", "enabled", ""]]
            client.put("/groups/front", {"restricted": 1})      # changed elsewhere: shows up
            await pilot.press("g")
            await settle(pilot)
            assert str(groups.get_row_at(0)[2]) == "yes"

    run(go())


def test_filter_services(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("slash", "f", "r", "o", "n", "t")     # no: 'front' is the group, not shown
            await pilot.pause()
            assert list(rows(app, "services")) == []
            await pilot.press("ctrl+a", "ctrl+k", "n", "o", "d", "e", "1")
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


def test_help_screen(api: LocalApi) -> None:
    async def go() -> None:
        app = app_for(api, read_only=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            text = str(app.screen.query_one("#help-text").render())
            assert "migrate / relocate the service: the node from a list" in text
            assert "Read-only mode" in text and "Simulation" not in text
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)

    run(go())


def test_history_failure_still_shows_the_cluster(tmp_path: Any) -> None:
    """A daemon that answers the state but not the history: the tables fill, the status
    line names the history's error, the health bar is not alarmed."""
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
            app = app_for(sock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                assert list(rows(app, "services")) == ["exec:x"]
                assert status(app).plain == ("API error (history): history: history unavailable: "
                                             "store snapshot being installed")
                assert not health(app).startswith("✖")

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
            assert isinstance(picker, PickScreen)
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


def test_sort_services(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert list(rows(app, "services")) == ["exec:db", "exec:web"]
            await pilot.press("o", "o", "o")                 # sid -> requested -> CRM state -> node
            assert app.sort_column == 3
            assert list(rows(app, "services")) == ["exec:db", "exec:web"]      # node1, node2
            await pilot.press("O")
            assert list(rows(app, "services")) == ["exec:web", "exec:db"]
            assert "sorted by node descending" in str(app.query_one("#services-title").render())
            write_cluster(api, {"exec:web": {"state": "started", "node": "node2", "uid": "u1", "running": 1},
                                "exec:db": {"state": "started", "node": "node3", "uid": "u2", "running": 1}})
            await pilot.press("g")
            await settle(pilot)
            assert list(rows(app, "services")) == ["exec:db", "exec:web"]      # held across refreshes
            await pilot.click("#services", offset=(2, 0))     # the mouse on the sid header
            await settle(pilot)
            assert app.sort_column == 0 and not app.sort_reverse
            assert list(rows(app, "services")) == ["exec:db", "exec:web"]

    run(go())
