"""Every operator action through the pilot, on a real API server over the real store:
asked (node from a list, timeout), confirmed, sent, then followed until the cluster
shows its outcome (the test plays the CRM with `write_cluster`); and every error path:
refused by the API, no quorum, API node dead, read-only."""

from __future__ import annotations

from harepl.runtime.api.client import ApiClient
from harepl.runtime.api.local_backend import LocalApi
from tests.tui.conftest import Member, app_for, settle, write_cluster
from tests.tui.test_app import SIZE, events_of, rows, run, select_service, status
from tui.screens import ConfirmScreen, PickScreen, StopScreen

WEB_STOPPED = {"exec:web": {"state": "stopped", "node": "node2", "uid": "u5"},
               "exec:db": {"state": "started", "node": "node1", "uid": "u2", "running": 1}}


async def refresh(pilot) -> None:  # type: ignore[no-untyped-def]
    await pilot.press("g")
    await settle(pilot)


def test_disable_is_followed_until_the_service_stopped(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:web")
            await pilot.press("d")
            assert isinstance(app.screen, ConfirmScreen) and app.screen.question == "Disable exec:web?"
            await pilot.press("y")
            await settle(pilot)
            assert client.get("/resources/exec:web")["state"] == "disabled"
            seq = [e["seq"] for e in client.get("/events", limit=1000) if e["op"] == "resource_update"][-1]
            # accepted is not done: the CRM has not stopped it yet
            assert status(app).plain == (f"disable exec:web: accepted (store seq {seq}), "
                                         "waiting for the cluster ...")
            assert rows(app, "services")["exec:web"][1:3] == ["⊘ disabled", "● started"]
            write_cluster(api, WEB_STOPPED)
            await refresh(pilot)
            assert status(app).plain.startswith("disable exec:web: done: exec:web is stopped on node2 (after ")
            assert status(app).kind == "ok" and not app.follows
            assert app.selected_sid() == "exec:web"     # the cursor stayed on the service
            # enable: the start fails, and the TUI says how
            await pilot.press("e", "y")
            await settle(pilot)
            assert client.get("/resources/exec:web")["state"] == "started"
            write_cluster(api, {**WEB_STOPPED, "exec:web": {"state": "error", "node": "node2", "uid": "u6"}},
                          results={"node2": {"u6": {"sid": "exec:web", "state": "started", "exit_code": 1}}})
            await refresh(pilot)
            assert status(app).plain.startswith("enable exec:web: FAILED: exec:web is in error on node2 "
                                                "(exit 1 on node2) (after ")
            assert status(app).kind == "error"

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


def test_migrate_picks_a_node_from_a_list_and_follows_the_move(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:web")
            await pilot.press("m")
            picker = app.screen
            assert isinstance(picker, PickScreen)
            assert [key for key, _ in picker.choices] == ["node1", "node3"]   # not where it runs
            assert picker.choices[1][1] == "node3  ● online"
            await pilot.press("down", "enter")       # node3
            assert isinstance(app.screen, ConfirmScreen)
            assert app.screen.question == "Migrate exec:web to node3?"
            await pilot.press("y")
            await settle(pilot)
            assert any('"migrate exec:web node3"' in d for d in events_of(client, "crm_command_enqueue"))
            assert "waiting for the cluster" in status(app).plain
            write_cluster(api, {**WEB_STOPPED, "exec:web": {"state": "migrate", "node": "node2",
                                                            "target": "node3", "uid": "u7"}})
            await refresh(pilot)
            assert "waiting for the cluster" in status(app).plain
            write_cluster(api, {**WEB_STOPPED, "exec:web": {"state": "started", "node": "node3", "uid": "u8"}})
            await refresh(pilot)
            assert status(app).plain.startswith("migrate exec:web to node3: done: exec:web is started on node3")
            # relocate: the CRM gives up on it; the TUI says it did not move
            await pilot.press("r", "enter", "y")
            await settle(pilot)
            assert any('"relocate exec:web node1"' in d for d in events_of(client, "crm_command_enqueue"))
            write_cluster(api, {**WEB_STOPPED, "exec:web": {"state": "relocate", "node": "node3",
                                                            "target": "node1", "uid": "u9"}})
            await refresh(pilot)
            write_cluster(api, {**WEB_STOPPED, "exec:web": {"state": "started", "node": "node3", "uid": "u10"}})
            await refresh(pilot)
            assert status(app).plain.startswith("relocate exec:web to node1: FAILED: the CRM did not move exec:web: "
                                                "it is started on node3")

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
            write_cluster(api, {"exec:db": {"state": "stopped", "node": "node1", "uid": "u3"},
                                "exec:web": {"state": "started", "node": "node2", "uid": "u1", "running": 1}})
            await refresh(pilot)
            assert status(app).plain.startswith("stop exec:db (timeout 15s): done: exec:db is stopped on node1")

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
            await pilot.press("down", "down", "down", "enter", "y")     # ignored: done once accepted
            await settle(pilot)
            assert client.get("/resources/exec:web")["state"] == "ignored"
            assert status(app).plain.startswith("set requested state ignored on exec:web: done (store seq ")

    run(go())


def test_node_maintenance_node_from_a_list(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("n")                               # no Tab to the nodes table first
            picker = app.screen
            assert isinstance(picker, PickScreen)
            assert [key for key, _ in picker.choices] == ["node1", "node2", "node3"]
            await pilot.press("down", "enter")                   # node2
            assert isinstance(app.screen, PickScreen)
            await pilot.press("enter", "y")                      # enable (offered first)
            await settle(pilot)
            assert any('"enable-node-maintenance node2"' in d for d in events_of(client, "crm_command_enqueue"))
            assert "waiting for the cluster" in status(app).plain
            write_cluster(api, {"exec:web": {"state": "started", "node": "node1", "uid": "u4", "running": 1},
                                "exec:db": {"state": "started", "node": "node1", "uid": "u2", "running": 1}},
                          node_status={"node1": "online", "node2": "maintenance", "node3": "online"})
            await refresh(pilot)
            assert rows(app, "nodes")["node2"][1] == "◐ maintenance"
            assert status(app).plain.startswith("enable maintenance on node2: done: node2 is in maintenance, "
                                                "its services moved away")
            # the highlighted node comes first; in maintenance, disable is offered first
            app.nodes_table.move_cursor(row=1, animate=False)
            await pilot.press("n")
            assert app.screen.choices[0][0] == "node2"           # type: ignore[attr-defined]
            await pilot.press("enter", "enter", "y")
            await settle(pilot)
            assert any('"disable-node-maintenance node2"' in d for d in events_of(client, "crm_command_enqueue"))

    run(go())


def test_remove_is_done_once_the_crm_let_go(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            select_service(app, "exec:web")
            await pilot.press("x", "y")
            await settle(pilot)
            assert [r["sid"] for r in client.get("/resources")] == ["exec:db"]
            assert list(rows(app, "services")) == ["exec:db"]
            assert "waiting for the cluster" in status(app).plain     # still in the CRM's status
            write_cluster(api, {"exec:db": {"state": "started", "node": "node1", "uid": "u2", "running": 1}})
            await refresh(pilot)
            assert status(app).plain.startswith("remove exec:web from HA: done: exec:web is no longer managed")

    run(go())


def test_refused_by_the_api_is_one_error_line(api: LocalApi, client: ApiClient) -> None:
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
            assert bar.plain == ("migrate exec:web to node1 refused: service 'exec:web' in error state, "
                                 "must be disabled and fixed first")
            assert not events_of(client, "crm_command_enqueue") and not app.follows

    run(go())


def test_no_quorum_refuses_and_says_so(members: dict[str, Member]) -> None:
    async def go() -> None:
        for m in members.values():
            m.quorate = False
        app = app_for(members["node1"].socket_path)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert app.query_one("#health").plain.startswith("✖ node1 has no quorum")   # type: ignore[attr-defined]
            select_service(app, "exec:web")
            await pilot.press("d", "y")
            await settle(pilot)
            assert status(app).plain == ("disable exec:web refused: no quorum or store unavailable: "
                                         "cluster not ready - no quorum on node 'node1'")
            assert members["node1"].client.get("/resources/exec:web")["state"] == "started"

    run(go())


def test_api_node_dead_refuses_the_action(api: LocalApi) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            api.handle.close()
            select_service(app, "exec:web")
            await pilot.press("d", "y")
            await settle(pilot)
            assert status(app).plain.startswith("disable exec:web refused: API node unreachable: cannot reach "
                                                "the harepl daemon")
            assert app.query_one("#health").plain.startswith("✖ ")       # type: ignore[attr-defined]
            assert app.is_running

    run(go())


def test_read_only_sends_nothing(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert "[read-only]" in app.sub_title
            select_service(app, "exec:web")
            for key in ("m", "r", "e", "d", "t", "s", "x", "n"):
                await pilot.press(key)
                await settle(pilot)
                assert app.screen is app.default_screen, key         # no dialog opens
                assert "read-only mode" in status(app).plain and status(app).kind == "error"
            assert client.get("/resources/exec:web")["state"] == "started"
            assert not events_of(client, "crm_command_enqueue")

    run(go())


def test_add_a_resource_followed_until_started(api: LocalApi, client: ApiClient) -> None:
    async def go() -> None:
        app = app_for(api)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("a")
            assert app.screen.query_one("#node").value == "node1"            # type: ignore[attr-defined]
            app.screen.query_one("#sid").value = "exec:new"                  # type: ignore[attr-defined]
            app.screen.query_one("#params").value = "command=sleep 100"      # type: ignore[attr-defined]
            await pilot.press("enter")
            assert isinstance(app.screen, ConfirmScreen) and app.screen.question == "Add exec:new on node1 (started)?"
            await pilot.press("y")
            await settle(pilot)
            added = client.get("/resources/exec:new")
            assert added["node"] == "node1" and added["params"] == {"command": "sleep 100"}
            assert "waiting for the cluster" in status(app).plain
            write_cluster(api, {"exec:new": {"state": "started", "node": "node1", "uid": "u11", "running": 1}})
            await refresh(pilot)
            assert status(app).plain.startswith("add exec:new on node1 (started): done: exec:new is started on node1")
            # the same SID again: the API refuses it
            await pilot.press("a")
            app.screen.query_one("#sid").value = "exec:new"                  # type: ignore[attr-defined]
            app.screen.query_one("#params").value = "command=sleep 1"        # type: ignore[attr-defined]
            await pilot.press("enter", "y")
            await settle(pilot)
            assert status(app).plain == "add exec:new on node1 (started) refused: resource ID 'exec:new' already defined"

    run(go())
