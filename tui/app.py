"""The harepl terminal UI: Proxmox's HA panel for harepl, on a live cluster or the simulator.

Layout (main screen): the one-line health bar, the nodes table, the services table, the
selected service's detail (wide terminals), the status bar and the key footer.

Textual's own means: every source call runs in a thread worker (`tui.source`: live API
with failover, or the simulator); the worker computes the rows and posts them back as a
custom message (`SnapshotReady`, `SourceTrouble`, `RefreshFailed`, `ActionDone`), so the
UI thread only diffs cells and never waits on a daemon. State the screen follows is in
reactives (`problem`, `filter_text`, `read_only`).
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Input, Label

from tui import actions, model
from tui.asking import AskMixin
from tui.source import DataSource, SourceError
from tui.widgets import STYLE, HealthBar, ServiceDetail, StatusBar
from tui.words import state_class

FOLLOW_POLL_S = 0.5     # refresh this often while an accepted command is being followed


class SnapshotReady(Message):
    """A refresh worker read the source; rows are ready to show."""

    def __init__(self, snap: model.Snapshot, node_rows: model.Rows, service_rows: model.Rows,
                 transitions: list[tuple[str | None, str]], events: list[dict[str, Any]],
                 history_error: str | None, changes: dict[str, model.Change]) -> None:
        super().__init__()
        self.snap, self.node_rows, self.service_rows = snap, node_rows, service_rows
        self.transitions, self.events, self.history_error, self.changes = transitions, events, history_error, changes


class SourceTrouble(Message):
    """Posted at once by a refresh worker whose endpoint failed, before it tries others."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class RefreshFailed(Message):
    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class ActionDone(Message):
    def __init__(self, action: actions.Action, outcome: actions.Outcome) -> None:
        super().__init__()
        self.action, self.outcome = action, outcome


class HareplApp(AskMixin, App[None]):
    CSS_PATH = "harepl.tcss"
    TITLE = "harepl"
    ENABLE_COMMAND_PALETTE = False      # its footer entry would cost the keys' room at 80 columns
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (150, "-wide")]

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("slash", "filter", "Filter"),
        Binding("g,f5", "refresh", "Refresh", show=False),
        Binding("m", "act('migrate')", "Migrate"),
        Binding("r", "act('relocate')", "Relocate", show=False),
        Binding("e", "act('enable')", "Enable"),
        Binding("d", "act('disable')", "Disable"),
        Binding("t", "act('state')", "Req. state", show=False),
        Binding("s", "act('stop')", "Stop", show=False),
        Binding("x,delete", "act('remove')", "Remove", show=False),
        Binding("n", "maintenance", "Node"),
        Binding("a", "add", "Add", show=False),
        Binding("h", "history", "History"),
        Binding("c", "config", "Groups/rules", show=False),
        Binding("o", "sort(1)", "Sort", show=False),
        Binding("O", "sort(-1)", "Sort back", show=False),
        Binding("space", "sim('run')", "Run/pause", show=False),
        Binding("full_stop", "sim('step')", "Step", show=False),
        Binding("p", "sim('power')", "Power", show=False),
        Binding("w", "sim('network')", "Network", show=False),
    ]

    problem: reactive[str | None] = reactive(None)
    filter_text: reactive[str] = reactive("")
    read_only: reactive[bool] = reactive(False)
    sort_column: reactive[int] = reactive(0)        # index in SERVICE_COLUMNS (0: sid)
    sort_reverse: reactive[bool] = reactive(False)

    def __init__(self, source: DataSource, interval_s: float = 2.0, read_only: bool = False) -> None:
        super().__init__()
        self.source = source
        self.interval_s = interval_s
        self.snapshot: model.Snapshot | None = None
        self.changes: dict[str, model.Change] = {}
        self.events = model.EventLog()
        self.follows: list[actions.Follow] = []
        self.status_line, self.status_kind = f"connecting to {source.target} ...", "info"
        self._refreshing = False
        self._refresh_again = False
        self._error_shown = False
        self._drawn = False     # set once mounted: watchers draw only then
        self._all_services: model.Rows = []
        self._shown: dict[str, dict[str, tuple[str, ...]]] = {"nodes": {}, "services": {}}
        # worker-side state (only ever touched by the one refresh worker running)
        self._worker_prev: model.Snapshot | None = None
        self._worker_changes: dict[str, model.Change] = {}
        self.set_reactive(HareplApp.read_only, read_only or source.read_only)
        self.sub_title = source.target + ("  [read-only]" if self.read_only else "")

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield HealthBar(id="health")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield Label("Nodes", classes="section", id="nodes-title")
                yield DataTable(id="nodes", cursor_type="row")
                yield Label("Services", classes="section", id="services-title")
                yield DataTable(id="services", cursor_type="row", zebra_stripes=True)
                yield Input(placeholder="filter: words in sid, node, state (Enter/Esc to close)", id="filter")
            with VerticalScroll(id="detail-pane"):
                yield ServiceDetail(id="detail")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.nodes_table: DataTable[Any] = self.query_one("#nodes", DataTable)
        self.services_table: DataTable[Any] = self.query_one("#services", DataTable)
        self.health = self.query_one(HealthBar)
        self.detail = self.query_one("#detail", ServiceDetail)
        self.services_title = self.query_one("#services-title", Label)
        self.filter_box = self.query_one("#filter", Input)
        for column in model.NODE_COLUMNS:
            self.nodes_table.add_column(column, key=column)
        for column in model.SERVICE_COLUMNS:
            self.services_table.add_column(column, key=column)
        self.health.show(None)
        self.filter_box.display = False
        self.set_status(self.status_line, "info")
        self.services_table.focus()
        self.action_refresh()
        self.refresh_timer = self.set_interval(self.interval_s, self.action_refresh)
        self.set_interval(FOLLOW_POLL_S, self._poll_follows)
        self._drawn = True
        self.sim_mount()

    def sim_mount(self) -> None:
        """Simulation mode adds its clock (tui.simcontrol); nothing for a live cluster."""

    MAIN_SCREEN_ACTIONS = frozenset({"act", "maintenance", "filter", "history", "config", "sim", "help", "sort", "add"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # main screen actions: not from a dialog or another screen (they would act on a
        # service the operator does not see, or stack a second dialog)
        if action in self.MAIN_SCREEN_ACTIONS and self.screen is not self.default_screen:
            return False
        if action == "sim" and self.source.kind != "sim":
            return False
        return True

    # ------------------------------------------------------------ status and health

    def set_status(self, line: str, kind: str = "info") -> None:
        self.status_line, self.status_kind = " ".join(line.split()), kind
        for screen in self.screen_stack:
            for bar in screen.query(StatusBar):
                bar.show(self.status_line, kind)

    def show_health(self) -> None:
        self.health.show(self.snapshot, self.problem, time.time() if self.source.kind == "live" else None,
                         self.source.health_label(self.snapshot), self.read_only)

    def watch_problem(self, _old: str | None, _new: str | None) -> None:
        if self._drawn:
            self.show_health()

    # ------------------------------------------------------------ refresh (worker -> messages)

    def action_refresh(self) -> None:
        if self._refreshing:
            # one refresh at a time (a slow daemon must not pile up threads); one more
            # after it, so that what an action just changed is read
            self._refresh_again = True
            return
        self._refreshing, self._refresh_again = True, False
        self._refresh_worker(self.events.last_seq)

    def _poll_follows(self) -> None:
        if self.follows and self.source.kind == "live":
            self.action_refresh()

    @work(thread=True, exclusive=False, group="refresh", exit_on_error=False)
    def _refresh_worker(self, after_seq: int | None) -> None:
        try:
            snap = self.source.fetch(self._tell_trouble)
        except SourceError as exc:
            self.post_message(RefreshFailed(exc.message))
            return
        except Exception as exc:  # noqa: BLE001 - a bad answer must not kill the UI; say what it was
            self.post_message(RefreshFailed(f"unexpected answer ({type(exc).__name__}: {exc})"))
            return
        prev, self._worker_prev = self._worker_prev, snap
        found = model.transitions(prev, snap) if prev is not None else []
        if prev is not None:
            model.track_changes(prev, snap, self._worker_changes)
        history_error = None
        try:
            evs = self.source.events(after_seq)
        except SourceError as exc:
            evs, history_error = [], exc.message
        except Exception as exc:  # noqa: BLE001
            evs, history_error = [], f"history: {type(exc).__name__}: {exc}"
        changes = dict(self._worker_changes)
        self.post_message(SnapshotReady(snap, model.node_rows(snap), model.service_rows(snap, changes), found,
                                        evs, history_error, changes))

    def _tell_trouble(self, line: str) -> None:
        """From the worker thread: the endpoint failed, another is being tried."""
        self.post_message(SourceTrouble(line))

    def on_source_trouble(self, message: SourceTrouble) -> None:
        self.problem = message.line

    def on_refresh_failed(self, message: RefreshFailed) -> None:
        self._refresh_done()
        self.problem = message.line
        if self.status_kind != "error" or self._error_shown:
            # (an action's failure line stays: it already says why)
            self._error_shown = True
            self.set_status(f"no answer: {message.line}", "error")

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self._refresh_done()
        snap = message.snap
        switched = self.snapshot is not None and snap.via != self.snapshot.via
        self.snapshot, self.changes = snap, message.changes
        self.problem = None if snap.quorate else f"{snap.api_node} has no quorum (no member with quorum answers)"
        if switched:
            self.set_status(f"reconnected through {snap.via}", "ok")
            self.sub_title = snap.via
        if message.history_error is not None:
            self._error_shown = True
            self.set_status(f"API error (history): {message.history_error}", "error")
        elif self._error_shown or self.status_line.startswith("connecting"):
            self._error_shown = False
            self.set_status(f"connected to {self.source.target}", "ok")
        self.events.add(message.events)
        self.events.observe(message.transitions, snap.wall_time_s)
        self.show_health()
        self.fill_table(self.nodes_table, message.node_rows, model.NODE_STATE_COLUMNS)
        self._all_services = message.service_rows
        self._fill_services()
        self._show_detail()
        self._check_follows(snap)
        for screen in self.screen_stack:
            view = getattr(screen, "refresh_view", None)
            if view is not None:
                try:
                    view()
                except NoMatches:   # that screen is being closed (a result arriving at exit)
                    pass

    def _refresh_done(self) -> None:
        self._refreshing = False
        if self._refresh_again:
            self.call_later(self.action_refresh)

    def fill_table(self, table: DataTable[Any], rows: model.Rows, state_columns: tuple[int, ...]) -> None:
        """Show `rows`: cells updated in place (widths grow to fit) when the same rows
        are there, else rebuilt with the cursor kept on the same key."""
        def cell(i: int, value: str) -> Text | str:
            return Text(value, style=STYLE.get(state_class(value), "")) if i in state_columns else value

        shown = self._shown.setdefault(str(table.id), {})
        keys = [key for key, _ in rows]
        if len(keys) == len(shown) and keys == list(shown):
            columns = [column.key for column in table.ordered_columns]
            for key, cells in rows:
                old = shown[key]
                if old == cells:
                    continue
                for i, value in enumerate(cells):
                    if old[i] != value:
                        table.update_cell(key, columns[i], cell(i, value), update_width=True)
                shown[key] = cells
            return
        current = row_key(table)
        table.clear()
        shown.clear()
        for key, cells in rows:
            table.add_row(*[cell(i, c) for i, c in enumerate(cells)], key=key)
            shown[key] = cells
        if current in shown:
            table.move_cursor(row=keys.index(current), animate=False)

    def _fill_services(self) -> None:
        if self.snapshot is None:
            return
        every = self._all_services
        shown = model.sort_rows(model.filter_rows(every, self.filter_text), self.sort_column, self.sort_reverse)
        self.fill_table(self.services_table, shown, model.SERVICE_STATE_COLUMNS)
        title = "Services"
        if self.filter_text.strip():
            title += f" (filter '{self.filter_text.strip()}': {len(shown)} of {len(every)}; / to change)"
        if self.sort_column or self.sort_reverse:
            title += (f" sorted by {model.SERVICE_COLUMNS[self.sort_column]}"
                      f"{' descending' if self.sort_reverse else ''} (o/O; click a header)")
        self.services_title.update(title)

    # ------------------------------------------------------------ sort

    def action_sort(self, step: int) -> None:
        """o: sort by the next column; O: the same column the other way round."""
        if step > 0:
            self.sort_column = (self.sort_column + 1) % len(model.SERVICE_COLUMNS)
        else:
            self.sort_reverse = not self.sort_reverse

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table.id == "services":
            if event.column_index == self.sort_column:
                self.sort_reverse = not self.sort_reverse
            else:
                self.sort_column, self.sort_reverse = event.column_index, False

    def watch_sort_column(self) -> None:
        if self._drawn:
            self._fill_services()

    def watch_sort_reverse(self) -> None:
        if self._drawn:
            self._fill_services()

    # ------------------------------------------------------------ filter

    def action_filter(self) -> None:
        self.filter_box.display = True
        self.filter_box.focus()

    def watch_filter_text(self) -> None:
        if self._drawn:
            self._fill_services()
            self._show_detail()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self._close_filter()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.filter_box.has_focus:
            event.stop()
            self._close_filter()

    def _close_filter(self) -> None:
        self.filter_box.display = False
        self.services_table.focus()

    # ------------------------------------------------------------ selection and detail

    def selected_sid(self) -> str | None:
        return row_key(self.services_table)

    def selected_node(self) -> str | None:
        return row_key(self.nodes_table)

    def _show_detail(self) -> None:
        if not self.detail.display or not self.detail.parent or not getattr(self.detail.parent, "display", True):
            return
        sid = self.selected_sid()
        self.detail.show(sid, self.snapshot, self.events.for_service(sid, limit=15) if sid else [],
                         self.changes.get(sid) if sid else None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "services":
            self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        from tui.screens import ServiceScreen

        key = event.row_key.value
        if event.data_table.id == "services" and key:
            self.push_screen(ServiceScreen(key))
        elif event.data_table.id == "nodes" and key:
            self.ask_maintenance(key)

    def action_history(self) -> None:
        from tui.screens import EventsScreen

        self.push_screen(EventsScreen())

    def action_config(self) -> None:
        from tui.screens import ConfigScreen

        self.push_screen(ConfigScreen())

    def action_help(self) -> None:
        from tui.screens import HelpScreen

        self.push_screen(HelpScreen(self.source.kind == "sim", self.read_only))

    def action_sim(self, what: str) -> None:
        """Simulation controls (tui.simcontrol overrides this in simulation mode)."""

    # ------------------------------------------------------------ sending and following

    def send(self, action: actions.Action) -> None:
        if self.read_only:
            self.set_status(f"{action.title}: not sent (read-only)", "error")
            return
        self.set_status(f"{action.title} ...", "info")
        self._action_worker(action)

    @work(thread=True, group="actions", exit_on_error=False)
    def _action_worker(self, action: actions.Action) -> None:
        self.post_message(ActionDone(action, actions.perform(self.source.request, action)))

    def on_action_done(self, message: ActionDone) -> None:
        outcome = message.outcome
        self._error_shown = False
        self.set_status(outcome.line, "info" if outcome.queued else "ok" if outcome.ok else "error")
        if outcome.queued:
            start = self.snapshot.wall_time_s if self.snapshot is not None else time.time()
            self.follows.append(actions.Follow(message.action, start))
        self.after_action()

    def after_action(self) -> None:
        self.action_refresh()

    def _check_follows(self, snap: model.Snapshot) -> None:
        for follow in list(self.follows):
            verdict = follow.check(snap)
            if verdict is not None:
                self.follows.remove(follow)
                ok, line = verdict
                self.set_status(line, "ok" if ok else "error")


def row_key(table: DataTable[Any]) -> str | None:
    if table.row_count == 0:
        return None
    try:
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # noqa: BLE001 - cursor outside the rows during a refill
        return None
    return str(key) if key is not None else None
