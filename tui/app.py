"""The harepl terminal UI: Proxmox's HA panel for harepl, over the local API.

Layout (main screen): cluster header (quorum, master, nodes), nodes table, services
table, the selected service's detail panel, a one-line status bar and the key footer.

Every API call runs in a thread worker (the client blocks); results come back to the
UI thread as worker state changes, so the UI never waits on the daemon. A failed
refresh leaves the last data on screen (marked stale) and says why in the status bar.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import DataTable, Footer, Input, Label
from textual.worker import Worker, WorkerState

from harepl.runtime.api.client import ApiClient, ApiClientError
from tui import actions, model
from tui.screens import ConfigScreen, ConfirmScreen, EventsScreen, PickScreen, ServiceScreen, StopScreen
from tui.widgets import ClusterHeader, ServiceDetail, StatusBar

STYLE = {"ok": "green", "bad": "bold red", "warn": "yellow", "dim": "dim"}


@dataclass
class RefreshResult:
    snapshot: model.Snapshot | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def fetch_all(client: ApiClient, after_seq: int | None) -> RefreshResult:
    """Blocking (worker thread): one refresh. API failures become one line, never raise.

    The history is read after the cluster state; when only the history fails, the state
    is still shown and the history's error is the status line.
    """
    try:
        snap = model.fetch_snapshot(client)
    except ApiClientError as exc:
        return RefreshResult(error=f"API error: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - a bad answer must not kill the UI; say what it was
        return RefreshResult(error=f"API error: unexpected answer ({type(exc).__name__}: {exc})")
    try:
        events = model.fetch_events(client, after_seq)
    except ApiClientError as exc:
        return RefreshResult(snapshot=snap, error=f"API error (history): {exc.message}")
    except Exception as exc:  # noqa: BLE001
        return RefreshResult(snapshot=snap, error=f"API error (history): {type(exc).__name__}: {exc}")
    return RefreshResult(snapshot=snap, events=events)


def perform_action(client: ApiClient, action: actions.Action) -> actions.Outcome:
    try:
        return actions.perform(client, action)
    except Exception as exc:  # noqa: BLE001 - one line in the status bar instead of a crash
        return actions.Outcome(False, f"{action.title} failed: {type(exc).__name__}: {exc}")


class HareplApp(App[None]):
    CSS_PATH = "harepl.tcss"
    TITLE = "harepl"

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("g,f5", "refresh", "Refresh"),
        Binding("m", "act('migrate')", "Migrate"),
        Binding("r", "act('relocate')", "Relocate"),
        Binding("e", "act('enable')", "Enable"),
        Binding("d", "act('disable')", "Disable"),
        Binding("t", "act('state')", "Req. state"),
        Binding("s", "act('stop')", "Stop"),
        Binding("x,delete", "act('remove')", "Remove"),
        Binding("n", "maintenance", "Node maint."),
        Binding("h", "history", "History"),
        Binding("c", "config", "Groups/rules"),
        Binding("slash", "filter", "Filter"),
    ]

    def __init__(self, client: ApiClient, interval_s: float = 2.0) -> None:
        super().__init__()
        self.client = client
        self.interval_s = interval_s
        self.snapshot: model.Snapshot | None = None
        self.events = model.EventLog()
        self.status_line = f"connecting to {client.target} ..."
        self.status_kind = "info"
        self._refresh_worker: Worker[RefreshResult] | None = None
        self._error_shown = False       # the status bar shows a refresh error now
        self._refresh_again = False
        self.filter_text = ""
        self.sub_title = client.target

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield ClusterHeader(id="cluster")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield Label("Nodes", classes="section")
                yield DataTable(id="nodes", cursor_type="row")
                yield Label("Services", classes="section", id="services-title")
                yield DataTable(id="services", cursor_type="row", zebra_stripes=True)
                yield Input(placeholder="filter services: words in sid, node, state, group (Enter/Esc to close)",
                            id="filter")
            with VerticalScroll(id="detail-pane"):
                yield ServiceDetail(id="detail")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.nodes_table: DataTable[Any] = self.query_one("#nodes", DataTable)
        self.services_table: DataTable[Any] = self.query_one("#services", DataTable)
        # kept, not queried later: a worker result may arrive while the app is shutting down
        self.header = self.query_one(ClusterHeader)
        self.detail = self.query_one("#detail", ServiceDetail)
        self.services_title = self.query_one("#services-title", Label)
        self.filter_box = self.query_one("#filter", Input)
        self.nodes_table.add_columns(*model.NODE_COLUMNS)
        self.services_table.add_columns(*model.SERVICE_COLUMNS)
        self.header.show(None)
        self.filter_box.display = False
        self.set_status(self.status_line, "info")
        self.services_table.focus()
        self.action_refresh()
        self.set_interval(self.interval_s, self.action_refresh)

    # actions of the main screen: not from a dialog or another screen (they would act on
    # a service the operator does not see, or stack a second dialog)
    MAIN_SCREEN_ACTIONS = frozenset({"act", "maintenance", "filter", "history", "config"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MAIN_SCREEN_ACTIONS and self.screen is not self.default_screen:
            return False
        return True

    # ------------------------------------------------------------ status line

    def set_status(self, line: str, kind: str = "info") -> None:
        self.status_line, self.status_kind = " ".join(line.split()), kind
        for screen in self.screen_stack:
            for bar in screen.query(StatusBar):
                bar.show(self.status_line, kind)

    # ------------------------------------------------------------ refresh

    def action_refresh(self) -> None:
        if self._refresh_worker is not None and self._refresh_worker.state in (
                WorkerState.PENDING, WorkerState.RUNNING):
            # one refresh at a time (a slow daemon must not pile up threads); one more
            # after it, so that what an action just changed is read
            self._refresh_again = True
            return
        self._refresh_again = False
        self._refresh_worker = self.run_worker(
            functools.partial(fetch_all, self.client, self.events.last_seq),
            name="refresh", group="refresh", thread=True, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR:    # not expected: the functions catch everything
            self.set_status(f"{worker.name} failed: {worker.error}", "error")
            return
        if event.state != WorkerState.SUCCESS:
            return
        if worker.group == "refresh" and isinstance(worker.result, RefreshResult):
            self._apply_refresh(worker.result)
            if self._refresh_again:
                self.action_refresh()
        elif worker.group == "actions" and isinstance(worker.result, actions.Outcome):
            outcome = worker.result
            self._error_shown = False
            self.set_status(outcome.line, "ok" if outcome.ok else "error")
            self.action_refresh()

    def _apply_refresh(self, result: RefreshResult) -> None:
        header = self.header
        if result.error is not None:
            if result.snapshot is None:
                header.show(self.snapshot, stale=self.snapshot is not None)
            if not (self.status_kind == "error" and not self._error_shown):
                # (an action's failure line stays: it already says why)
                self._error_shown = True
                self.set_status(result.error, "error")
            if result.snapshot is None:
                return
        elif self._error_shown or self.status_line.startswith("connecting"):
            self._error_shown = False
            self.set_status(f"connected to {self.client.target}", "ok")
        previous, self.snapshot = self.snapshot, result.snapshot
        self.events.add(result.events)
        assert self.snapshot is not None
        if previous is not None:
            self.events.observe(model.transitions(previous, self.snapshot), self.snapshot.wall_time_s)
        header.show(self.snapshot)
        self.fill_table(self.nodes_table, model.node_rows(self.snapshot), state_columns=(1, 2))
        self._fill_services()
        self._show_detail()
        for screen in self.screen_stack:
            view = getattr(screen, "refresh_view", None)
            if view is not None:
                try:
                    view()
                except NoMatches:   # that screen is being closed (a result arriving at exit)
                    pass

    @staticmethod
    def fill_table(table: DataTable[Any], rows: list[tuple[str, tuple[str, ...]]],
              state_columns: tuple[int, ...]) -> None:
        """Show `rows`: cells updated in place when the same rows are there (cursor and
        scroll stay), else rebuilt with the cursor kept on the same key if it still exists."""
        def cell(i: int, value: str) -> Text:
            return Text(value, style=STYLE.get(model.state_class(value), "") if i in state_columns else "")

        keys = [key for key, _ in rows]
        if keys == [str(k.value) for k in table.rows]:
            columns = [column.key for column in table.ordered_columns]
            for key, cells in rows:
                old = table.get_row(key)
                for i, value in enumerate(cells):
                    if str(getattr(old[i], "plain", old[i])) != value:
                        table.update_cell(key, columns[i], cell(i, value))
            return
        current = _row_key(table)
        table.clear()
        for key, cells in rows:
            table.add_row(*[cell(i, c) for i, c in enumerate(cells)], key=key)
        if current in keys:
            table.move_cursor(row=keys.index(current), animate=False)

    def _fill_services(self) -> None:
        if self.snapshot is None:
            return
        every = model.service_rows(self.snapshot)
        shown = model.filter_rows(every, self.filter_text)
        self.fill_table(self.services_table, shown, state_columns=(2,))
        title = "Services" if not self.filter_text.strip() else (
            f"Services (filter '{self.filter_text.strip()}': {len(shown)} of {len(every)}; / to change)")
        self.services_title.update(title)

    # ------------------------------------------------------------ filter

    def action_filter(self) -> None:
        box = self.filter_box
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value
            self._fill_services()
            self._show_detail()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self._close_filter()

    def on_key(self, event: events.Key) -> None:
        box = self.filter_box
        if event.key == "escape" and box.has_focus:
            event.stop()
            self._close_filter()

    def _close_filter(self) -> None:
        box = self.filter_box
        box.display = False
        self.services_table.focus()

    # ------------------------------------------------------------ selection and detail

    def selected_sid(self) -> str | None:
        return _row_key(self.services_table)

    def selected_node(self) -> str | None:
        return _row_key(self.nodes_table)

    def _show_detail(self) -> None:
        sid = self.selected_sid()
        self.detail.show(
            sid, self.snapshot, self.events.for_service(sid, limit=15) if sid else [])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "services":
            self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if event.data_table.id == "services" and key:
            self.push_screen(ServiceScreen(key))
        elif event.data_table.id == "nodes" and key:
            self.ask_maintenance(key)

    def action_history(self) -> None:
        self.push_screen(EventsScreen())

    def action_config(self) -> None:
        self.push_screen(ConfigScreen())

    # ------------------------------------------------------------ actions

    def action_act(self, verb: str) -> None:
        self.ask(verb, self.selected_sid())

    def action_maintenance(self) -> None:
        node = self.selected_node()
        if node is None:
            self.set_status("select a node first (Tab to the nodes table)", "error")
            return
        self.ask_maintenance(node)

    def ask(self, verb: str, sid: str | None) -> None:
        """Ask the operator what is missing (target node, timeout), confirm, then send."""
        if sid is None:
            self.set_status(f"{verb}: no service selected", "error")
            return
        if verb in ("migrate", "relocate"):
            snap = self.snapshot
            res = snap.resource(sid) if snap else None
            if snap is None or res is None:
                self.set_status(f"{verb}: no cluster data for {sid} yet", "error")
                return
            current = snap.service_status(sid).get("node") or res.get("node")
            choices = [(n, f"{n}  ({snap.node_state(n) or 'no CRM state'})")
                       for n in snap.node_names() if n != current]
            if not choices:
                self.set_status(f"{verb}: no other node to move {sid} to", "error")
                return
            build = actions.migrate if verb == "migrate" else actions.relocate

            def picked(node: str | None) -> None:
                if node:
                    self.confirm(build(sid, node))

            self.push_screen(PickScreen(f"{verb.capitalize()} {sid} (on {current}) to:", choices), picked)
        elif verb == "enable":
            self.confirm(actions.set_state(sid, "started"))
        elif verb == "disable":
            self.confirm(actions.set_state(sid, "disabled"))
        elif verb == "state":
            res = self.snapshot.resource(sid) if self.snapshot else None
            current = res.get("state") if res else None
            choices = [(state, f"{state}{'  (current)' if state == current else ''}")
                       for state in actions.REQUEST_STATES]

            def chosen(state: str | None) -> None:
                if state:
                    self.confirm(actions.set_state(sid, state))

            self.push_screen(PickScreen(f"Requested state of {sid}:", choices), chosen)
        elif verb == "stop":
            def timed(timeout_s: int | None) -> None:
                if timeout_s is not None:
                    self.confirm(actions.stop(sid, timeout_s))

            self.push_screen(StopScreen(sid), timed)
        elif verb == "remove":
            self.confirm(actions.remove(sid))
        else:
            self.set_status(f"unknown action {verb}", "error")

    def ask_maintenance(self, node: str) -> None:
        snap = self.snapshot
        in_maintenance = snap is not None and (
            snap.node_state(node) == "maintenance"
            or (snap.lrm_status.get(node) or {}).get("mode") == "maintenance")
        choices = [("enable", f"enable maintenance on {node}"), ("disable", f"disable maintenance on {node}")]
        if in_maintenance:
            choices.reverse()

        def picked(choice: str | None) -> None:
            if choice:
                self.confirm(actions.maintenance(node, choice == "enable"))

        self.push_screen(PickScreen(f"Node {node}: maintenance mode", choices), picked)

    def confirm(self, action: actions.Action) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.send(action)
            else:
                self.set_status(f"{action.title}: cancelled", "info")

        self.push_screen(ConfirmScreen(f"{action.title[0].upper()}{action.title[1:]}?"), answered)

    def send(self, action: actions.Action) -> None:
        self.set_status(f"{action.title} ...", "info")
        self.run_worker(functools.partial(perform_action, self.client, action),
                        name=action.title, group="actions", thread=True, exit_on_error=False)


def _row_key(table: DataTable[Any]) -> str | None:
    if table.row_count == 0:
        return None
    try:
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # noqa: BLE001 - cursor outside the rows during a refill
        return None
    return str(key) if key is not None else None
