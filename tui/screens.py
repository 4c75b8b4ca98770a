"""Screens: confirmation and pickers (modal), the service detail and the history.

Modal screens only return what the operator chose (`dismiss(value)`); the app decides
what to send. The full screens read the app's last snapshot and event log; they never
call the API themselves.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, OptionList
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from harepl.runtime.api.client import ApiClientError
from tui import model
from tui.source import DataSource, SourceError
from tui.widgets import ServiceDetail, StatusBar
from tui.words import event_line, format_clock

if TYPE_CHECKING:
    from tui.app import HareplApp

MAX_STOP_TIMEOUT_S = 86400


class ConfirmScreen(ModalScreen[bool]):
    """"Really do X?" — y/enter confirms, n/escape cancels."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PickScreen(ModalScreen[str | None]):
    """Pick one of a few choices (a target node, a maintenance direction)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]]) -> None:
        """choices: (id returned, label shown)."""
        super().__init__()
        self.title_text = title
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, id="question")
            yield OptionList(*[Option(label, id=key) for key, label in self.choices], id="choices")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class StopScreen(ModalScreen[int | None]):
    """Ask for the stop timeout in seconds (0 = hard stop), as `crm-command stop` does."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, sid: str) -> None:
        super().__init__()
        self.sid = sid

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Stop {self.sid}: timeout in seconds (0 = hard stop)", id="question")
            yield Input(value="60", placeholder="seconds", type="integer", id="timeout")
            yield Label("", id="input-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        raw = event.value.strip()
        if not raw.isdigit() or int(raw) > MAX_STOP_TIMEOUT_S:
            self.query_one("#input-error", Label).update(
                f"timeout must be a whole number of seconds from 0 to {MAX_STOP_TIMEOUT_S}")
            return
        self.dismiss(int(raw))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PathScreen(ModalScreen[str | None]):
    """Ask for a path (simulation mode: where to save the scenario folder)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, default: str) -> None:
        super().__init__()
        self.question, self.default = question, default

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, id="question")
            yield Input(value=self.default, id="path")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class AddScreen(ModalScreen[tuple[str, str, str, str] | None]):
    """A new HA resource: SID, node, requested state, agent parameters."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Add an HA resource (Tab between fields, Enter adds)", id="question")
            yield Input(placeholder="SID, e.g. exec:web or vm:100", id="sid")
            yield Input(value=self.node, placeholder="node to start on", id="node")
            yield Input(value="started", placeholder="started, stopped, disabled or ignored", id="state")
            yield Input(placeholder="exec: command=sleep 1000   others: KEY=VALUE ...", id="params")
            yield Label("", id="input-error")

    def on_mount(self) -> None:
        self.query_one("#sid", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        values = {i.id: i.value.strip() for i in self.query(Input) if i.id}
        error = self.query_one("#input-error", Label)
        if ":" not in values["sid"] and not values["sid"].isdigit():
            error.update("SID must be TYPE:NAME (exec:web, vm:100)")
            return
        if values["state"] not in ("started", "stopped", "disabled", "ignored", "enabled"):
            error.update("state must be started, stopped, disabled or ignored")
            return
        self.dismiss((values["sid"], values["node"], values["state"], values["params"]))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ServiceScreen(Screen[None]):
    """One service in full: config, CRM status, its history; the action keys act on it."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("m", "act('migrate')", "Migrate"),
        Binding("r", "act('relocate')", "Relocate"),
        Binding("e", "act('enable')", "Enable"),
        Binding("d", "act('disable')", "Disable"),
        Binding("t", "act('state')", "Req. state"),
        Binding("s", "act('stop')", "Stop"),
        Binding("x,delete", "act('remove')", "Remove"),
    ]

    def __init__(self, sid: str) -> None:
        super().__init__()
        self.sid = sid

    @property
    def happ(self) -> HareplApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="service-scroll"):
            yield ServiceDetail(id="service-full")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.sid
        self.refresh_view()
        self.query_one(StatusBar).show(self.happ.status_line, self.happ.status_kind)

    def refresh_view(self) -> None:
        self.query_one(ServiceDetail).show(self.sid, self.happ.snapshot,
                                           self.happ.events.for_service(self.sid, limit=200),
                                           self.happ.changes.get(self.sid))

    def action_act(self, verb: str) -> None:
        self.happ.ask(verb, self.sid)


class EventsScreen(Screen[None]):
    """The store's history since the TUI started (plus the page before it), newest first."""

    _drawn_version = -1

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back"), Binding("g,f5", "app.refresh", "Refresh")]

    @property
    def happ(self) -> HareplApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Label("", id="events-title")
        yield DataTable(id="events", cursor_type="row", zebra_stripes=True)
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("seq", "time", "what happened")
        self.refresh_view()
        self.query_one(StatusBar).show(self.happ.status_line, self.happ.status_kind)
        table.focus()

    def refresh_view(self) -> None:
        log = self.happ.events
        self.query_one("#events-title", Label).update(
            f"History: {len(log.kept)} events (commands, refusals, and the state changes this TUI saw; "
            f"routine status writes left out)")
        if log.version == self._drawn_version:
            return
        self._drawn_version = log.version
        table: DataTable[Any] = self.query_one(DataTable)
        current = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value if table.row_count else None
        table.clear()
        for event in reversed(log.kept):    # newest first
            style = "" if event.get("ok", True) else "bold red"
            if event.get("op") == "observed":
                style = "italic"
            seq = event.get("seq")
            cells = ("-" if seq is None else str(seq), format_clock(event.get("ts")), event_line(event))
            table.add_row(*[Text(c, style=style) for c in cells], key=str(event["key"]))
        if current is not None and current in {str(e["key"]) for e in log.kept}:
            table.move_cursor(row=table.get_row_index(current), animate=False)


def fetch_config(source: DataSource) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """Blocking (worker thread): groups and rules, or the API's one-line error."""
    try:
        return list(source.get("/groups")), list(source.get("/rules")), None
    except (ApiClientError, SourceError) as exc:
        return [], [], f"API error: {exc.message}"


class ConfigScreen(Screen[None]):
    """HA groups and rules (read-only), refreshed with the rest of the app."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back"), Binding("g,f5", "app.refresh", "Refresh")]

    @property
    def happ(self) -> HareplApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Label("Groups", classes="section")
        yield DataTable(id="groups", cursor_type="row")
        yield Label("Rules", classes="section")
        yield DataTable(id="rules", cursor_type="row")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self._worker: Worker[Any] | None = None
        self.query_one("#groups", DataTable).add_columns(*model.GROUP_COLUMNS)
        self.query_one("#rules", DataTable).add_columns(*model.RULE_COLUMNS)
        self.query_one(StatusBar).show(self.happ.status_line, self.happ.status_kind)
        self.refresh_view()

    def refresh_view(self) -> None:
        if self._worker is not None and self._worker.state in (WorkerState.PENDING, WorkerState.RUNNING):
            return
        self._worker = self.run_worker(functools.partial(fetch_config, self.happ.source), name="config",
                                       group="config", thread=True, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "config" or event.state != WorkerState.SUCCESS:
            return
        event.stop()    # the app's handler is for its own workers
        result = event.worker.result
        if not isinstance(result, tuple):
            return
        groups, rules, error = result
        if error is not None:
            self.happ.set_status(error, "error")
            return
        self.happ.fill_table(self.query_one("#groups", DataTable), model.group_rows(groups), ())
        self.happ.fill_table(self.query_one("#rules", DataTable), model.rule_rows(rules), (5,))


class HelpScreen(ModalScreen[None]):
    """`?`: every key, what it does, and the mode the TUI runs in."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    KEYS = [
        ("Main screen", [("↑ ↓ / mouse", "select a service (Tab: the nodes table)"),
                         ("Enter", "the service in full (or the node's maintenance)"),
                         ("/", "filter services by words (Esc closes)"), ("g, F5", "refresh now"),
                         ("o / O", "sort by the next column / the other way (or click a header)"),
                         ("h", "history in plain words"), ("c", "groups and rules"), ("?", "this help"),
                         ("q", "quit")]),
        ("Actions (confirmed with y, cancelled with n/Esc)",
         [("m / r", "migrate / relocate the service: the node from a list"),
          ("e / d", "enable (started) / disable"), ("t", "requested state from a list"),
          ("s", "stop with a timeout (0 = hard stop)"), ("x, Del", "remove from HA"),
          ("n", "node maintenance: the node from a list"), ("a", "add a resource")]),
    ]
    SIM_KEYS = ("Simulation", [("Space", "run / pause the clock"), (".", "one round"),
                               ("p", "power a node off or on"), ("w", "cut or restore a node's network"),
                               ("S", "save as scenario folder")])

    def __init__(self, sim: bool = False, read_only: bool = False) -> None:
        super().__init__()
        self.sim, self.read_only = sim, read_only

    def compose(self) -> ComposeResult:
        text = Text()
        sections = list(self.KEYS) + ([self.SIM_KEYS] if self.sim else [])
        for title, keys in sections:
            text.append(title + "\n", style="bold underline")
            for key, words in keys:
                text.append(f"  {key:<13}", style="bold")
                text.append(words + "\n")
        text.append("\nA command the API accepts is followed until the cluster shows its outcome;\n"
                    "the status bar says done or FAILED, not just queued.\n", style="dim")
        if self.read_only:
            text.append("Read-only mode: actions are refused here and nothing is sent.\n", style="bold yellow")
        with VerticalScroll(classes="dialog", id="help"):
            yield Label(text, id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
