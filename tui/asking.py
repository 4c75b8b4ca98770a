"""What the operator is asked before an action is sent: the target node from a list,
the stop timeout, the maintenance direction, and a confirmation (`y`/`n`).

A mixin of the app: the dialogs (tui.screens) only return what was chosen; the app
decides what to send (`send`, in tui.app).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from tui import actions
from tui.words import with_symbol

if TYPE_CHECKING:
    from textual.app import App

    from tui import model


class AskMixin:
    snapshot: model.Snapshot | None
    read_only: bool

    if TYPE_CHECKING:   # provided by the app (not defined here: they would shadow App's)
        def set_status(self, line: str, kind: str = "info") -> None: ...
        def send(self, action: actions.Action) -> None: ...
        def selected_sid(self) -> str | None: ...
        def selected_node(self) -> str | None: ...

    def _push(self, screen: Any, callback: Any = None) -> None:
        cast("App[None]", self).push_screen(screen, callback)

    def _refuse_read_only(self, what: str) -> bool:
        if self.read_only:
            self.set_status(f"{what}: read-only mode (started with --read-only): nothing is sent", "error")
        return self.read_only

    def action_act(self, verb: str) -> None:
        self.ask(verb, self.selected_sid())

    def action_maintenance(self) -> None:
        """Node maintenance: the node from a list (the highlighted node first)."""
        if self._refuse_read_only("node maintenance"):
            return
        from tui.screens import PickScreen

        snap = self.snapshot
        if snap is None or not snap.node_names():
            self.set_status("node maintenance: no cluster data yet", "error")
            return
        names = snap.node_names()
        first = self.selected_node()
        if first in names:
            names.remove(first)
            names.insert(0, first)
        choices = [(n, f"{n}  {with_symbol(snap.node_state(n) or 'no CRM state')}") for n in names]

        def picked(node: str | None) -> None:
            if node:
                self.ask_maintenance(node)

        self._push(PickScreen("Node maintenance: which node?", choices), picked)

    def ask(self, verb: str, sid: str | None) -> None:
        """Ask the operator what is missing (target node, timeout), confirm, then send."""
        if self._refuse_read_only(verb):
            return
        from tui.screens import PickScreen, StopScreen

        if sid is None:
            self.set_status(f"{verb}: no service selected", "error")
            return
        snap = self.snapshot
        res = snap.resource(sid) if snap else None
        if verb in ("migrate", "relocate"):
            if snap is None or res is None:
                self.set_status(f"{verb}: no cluster data for {sid} yet", "error")
                return
            current = snap.service_status(sid).get("node") or res.get("node")
            choices = [(n, f"{n}  {with_symbol(snap.node_state(n) or 'no CRM state')}")
                       for n in snap.node_names() if n != current]
            if not choices:
                self.set_status(f"{verb}: no other node to move {sid} to", "error")
                return
            build = actions.migrate if verb == "migrate" else actions.relocate

            def picked(node: str | None) -> None:
                if node:
                    self.confirm(build(sid, node))

            self._push(PickScreen(f"{verb.capitalize()} {sid} (on {current}) to:", choices), picked)
        elif verb == "enable":
            self.confirm(actions.set_state(sid, "started"))
        elif verb == "disable":
            self.confirm(actions.set_state(sid, "disabled"))
        elif verb == "state":
            current = res.get("state") if res else None
            states = [(s, f"{s}{'  (current)' if s == current else ''}") for s in actions.REQUEST_STATES]

            def chosen(state: str | None) -> None:
                if state:
                    self.confirm(actions.set_state(sid, state))

            self._push(PickScreen(f"Requested state of {sid}:", states), chosen)
        elif verb == "stop":
            def timed(timeout_s: int | None) -> None:
                if timeout_s is not None:
                    self.confirm(actions.stop(sid, timeout_s))

            self._push(StopScreen(sid), timed)
        elif verb == "remove":
            self.confirm(actions.remove(sid))
        else:
            self.set_status(f"unknown action {verb}", "error")

    def action_add(self) -> None:
        if self._refuse_read_only("add"):
            return
        from tui.screens import AddScreen

        snap = self.snapshot
        node = self.selected_node() or (snap.node_names()[0] if snap and snap.node_names() else "")

        def filled(values: tuple[str, str, str, str] | None) -> None:
            if values is None:
                return
            sid, node, state, params = values
            try:
                parsed = actions.parse_params(params)
            except ValueError as exc:
                self.set_status(f"add {sid}: {exc}", "error")
                return
            self.confirm(actions.add(sid, node, state, parsed))

        self._push(AddScreen(node), filled)

    def ask_maintenance(self, node: str) -> None:
        if self._refuse_read_only("node maintenance"):
            return
        from tui.screens import PickScreen

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

        self._push(PickScreen(f"Node {node}: maintenance mode", choices), picked)

    def confirm(self, action: actions.Action) -> None:
        from tui.screens import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.send(action)
            else:
                self.set_status(f"{action.title}: cancelled", "info")

        self._push(ConfirmScreen(f"{action.title[0].upper()}{action.title[1:]}?"), answered)
