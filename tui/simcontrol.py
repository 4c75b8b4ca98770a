"""Simulation mode (`harepl tui --sim DIR`): the main screen on a `SimSource`, with the
simulator's clock (run, pause, one round) and per-node power and network switches.

The clock runs in a thread worker (a round of the real core on many services takes
time); each finished step posts `SimStepped`, and the app refreshes from the source as
it does for a live cluster.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive

from tui.app import HareplApp
from tui.simsource import SimSource
from tui.words import with_symbol

ROUND_EVERY_S = 0.25        # real seconds between rounds while the clock runs


class SimStepped(Message):
    def __init__(self, violation: str | None) -> None:
        super().__init__()
        self.violation = violation


class SimApp(HareplApp):
    BINDINGS = [
        Binding("space", "sim('run')", "Run/pause"),
        Binding("full_stop", "sim('step')", "Step"),
        Binding("p", "sim('power')", "Power"),
        Binding("w", "sim('network')", "Net"),
        Binding("S", "sim('save')", "Save", show=False),
    ]

    running: reactive[bool] = reactive(False)

    @property
    def sim(self) -> SimSource:
        assert isinstance(self.source, SimSource)
        return self.source

    def sim_mount(self) -> None:
        self._stepping = False
        self.set_interval(ROUND_EVERY_S, self._tick)
        self.title = "harepl simulator"

    def watch_running(self, running: bool) -> None:
        if self._drawn:
            self.set_status(f"simulation clock {'running' if running else 'paused'} at t={self.sim.now:.1f}s "
                            "(Space: run/pause, .: one round)", "info")

    def _tick(self) -> None:
        if self.running:
            self.step_clock(1)

    def step_clock(self, rounds: int = 1) -> None:
        if self._stepping:
            return
        self._stepping = True
        self._step_worker(rounds)

    @work(thread=True, group="sim", exit_on_error=False)
    def _step_worker(self, rounds: int) -> None:
        self.post_message(SimStepped(self.sim.step(rounds)))

    def on_sim_stepped(self, message: SimStepped) -> None:
        self._stepping = False
        if message.violation is not None:
            self.running = False
            self.set_status(f"INVARIANT BROKEN: {message.violation}", "error")
        self.action_refresh()

    def action_sim(self, what: str) -> None:
        from tui.screens import PickScreen

        if what == "run":
            self.running = not self.running
        elif what == "step":
            self.running = False
            self.step_clock(1)
        elif what == "save":
            from tui.screens import PathScreen

            default = f"{self.sim.folder or 'scenario'}-t{int(self.sim.now)}"

            def chosen(path: str | None) -> None:
                if not path:
                    return
                try:
                    written = self.sim.save(Path(path))
                except OSError as exc:
                    self.set_status(f"save as scenario folder failed: {exc.strerror}: {exc.filename}", "error")
                    return
                self.set_status(f"saved t={self.sim.now:.1f}s as scenario folder {path} ({', '.join(written)})", "ok")

            self.push_screen(PathScreen("Save the simulation as a scenario folder:", default), chosen)
        elif what in ("power", "network"):
            if self._refuse_read_only(f"{what} switch"):
                return
            snap = self.snapshot
            if snap is None:
                return
            choices = []
            for entry in snap.nodes:
                now_on = entry.get(what) == "on"
                choices.append((f"{entry['node']} {'off' if now_on else 'on'}",
                                f"{entry['node']}: {what} {'on → off' if now_on else 'off → on'}  "
                                f"({with_symbol(entry.get('status') or 'no CRM state')})"))

            def picked(choice: str | None) -> None:
                if choice:
                    node, to = choice.split()
                    self.sim.hardware(f"{what} {node} {to}")
                    self.set_status(f"{what} of {node} switched {to} at t={self.sim.now:.1f}s", "ok")
                    self.action_refresh()

            self.push_screen(PickScreen(f"Switch a node's {what}:", choices), picked)

    def after_action(self) -> None:
        # a command reaches the simulated CRM on its next rounds: a paused clock says so
        if not self.running and self.follows:
            self.set_status(self.status_line + " (clock paused: Space runs it, . steps)", "info")
        self.action_refresh()
