"""Small widgets: the one-line health bar, the one-line status bar, the service detail.

Each keeps the plain text it shows in `.plain`, which the pilot tests read.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from tui import model
from tui.words import event_line, format_age, format_clock, plain, with_symbol

STYLE = {"ok": "green", "bad": "bold red", "warn": "yellow", "dim": "dim"}


class HealthBar(Static):
    """Quorum, master, nodes, fencing, services, and where the data comes from: one line.

    `problem` (the source is unreachable, switching members) comes first, in red, from
    the moment the app knows; the last data stays after it, with its age.
    """

    plain = ""

    def show(self, snap: model.Snapshot | None, problem: str | None = None, now_s: float | None = None,
             source: str | None = None, read_only: bool = False) -> None:
        self._args = (snap, problem, now_s, source, read_only)
        width = self.size.width - 2 if self.size.width else 10_000
        text = Text()
        for compact in (False, True):
            text = self._line(snap, problem, now_s, source, compact)
            if read_only:
                text = Text.assemble(("READ-ONLY", "bold black on yellow"), " ", text, no_wrap=True,
                                     overflow="ellipsis")
            if snap is None or text.cell_len <= width:
                break
        self.plain = text.plain
        self.update(text)

    @staticmethod
    def _line(snap: model.Snapshot | None, problem: str | None, now_s: float | None, source: str | None,
              compact: bool) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if problem:
            text.append(f"✖ {problem}", style="bold white on red")
            text.append("  ")
        if snap is None:
            if not problem:
                text.append("cluster state unknown (no answer yet)", style="bold red")
            return text
        bar = " │ " if not compact else "│"
        for i, (words, kind) in enumerate(model.health_parts(snap, compact)):
            if i:
                text.append(bar, style="dim")
            text.append(words, style=STYLE.get(kind, ""))
        text.append(bar, style="dim")
        text.append(source or (snap.api_node if compact else f"via {snap.api_node}"), style="dim")
        if problem and now_s is not None:
            text.append(f" (data {format_age(now_s - snap.wall_time_s)} old)", style="bold yellow")
        return text

    def on_resize(self) -> None:
        self.call_after_refresh(lambda: self.show(*self._args) if getattr(self, "_args", None) else None)


class StatusBar(Static):
    """One line: the last action's result or the last error. Never more than one line."""

    plain = ""
    kind = "info"

    def show(self, line: str, kind: str = "info") -> None:
        self.plain = " ".join(line.split())
        self.kind = kind
        self.set_classes(f"status-{kind}")
        self.update(Text(self.plain, no_wrap=True, overflow="ellipsis"))


DETAIL_KEYS = ("type", "state", "node", "group", "max_restart", "max_relocate", "failback", "comment")
STATUS_WORDS = {"state": "CRM state", "node": "node", "target": "target", "uid": "uid", "running": "running",
                "failed_nodes": "failed on", "maintenance_node": "back to", "timeout": "stop timeout",
                "cmd": "pending cmd", "stop_unconfirmed": "stop unsure"}


def detail_text(sid: str | None, snap: model.Snapshot | None, events: list[dict[str, Any]],
                change: model.Change | None = None) -> Text:
    """The service's config, its CRM status, why it last changed and its recent history."""
    text = Text()
    if sid is None or snap is None:
        text.append("no service selected", style="dim")
        return text
    res = snap.resource(sid)
    if res is None:
        text.append(f"{sid}: no longer configured", style="bold red")
        return text
    text.append(sid + "\n", style="bold")
    text.append("config\n", style="underline")
    for key in DETAIL_KEYS:
        if key in res:
            text.append(f"  {key:<14}", style="bold")
            text.append(f"{plain(res[key])}\n")
    for key, value in sorted((res.get("params") or {}).items()):
        text.append(f"  {'param':<14}", style="bold")
        text.append(f"{key}={plain(value)}\n")
    for what, problem in sorted((res.get("errors") or {}).items()):
        text.append(f"  {what}: {plain(problem)}\n", style="red")
    status = snap.service_status(sid)
    text.append("CRM status\n", style="underline")
    if not status:
        text.append("  not yet seen by the CRM (queued)\n", style="dim")
    for key in sorted(status):
        value = status[key]
        shown = with_symbol(str(value)) if key == "state" else plain(value)
        text.append(f"  {STATUS_WORDS.get(key, key):<14}", style="bold")
        text.append(f"{shown}\n")
    failure = snap.agent_failure(sid)
    node_entry = snap.lrm_status.get(str(status.get("node"))) or {}
    if node_entry.get("watchdog_error"):
        text.append(f"  {'watchdog':<14}", style="bold")
        text.append(f"cannot arm on {status.get('node')}: {plain(node_entry['watchdog_error'])}\n", style="red")
    text.append(f"  {'agent failure':<14}", style="bold")
    text.append(f"{failure}\n", style="red" if failure != "-" else "")
    if change is not None:
        text.append(f"  {'last change':<14}", style="bold")
        text.append(f"to {change.state} {format_age(snap.wall_time_s - change.at_s)} ago: {change.reason}\n")
    text.append("recent events\n", style="underline")
    if not events:
        text.append("  none read since the TUI started\n", style="dim")
    for event in events[-15:]:
        seq = event.get("seq")
        text.append(f"  {format_clock(event.get('ts'))[11:]} ", style="dim")
        if seq is not None:
            text.append(f"#{seq} ", style="dim")
        text.append(event_line(event) + "\n", style="" if event.get("ok", True) else "bold red")
    return text


class ServiceDetail(Static):
    plain = ""

    def show(self, sid: str | None, snap: model.Snapshot | None, events: list[dict[str, Any]],
             change: model.Change | None = None) -> None:
        text = detail_text(sid, snap, events, change)
        self.plain = text.plain
        self.update(text)
