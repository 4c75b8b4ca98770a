"""Small widgets: the cluster header, the one-line status bar, the service detail panel.

Each keeps the plain text it shows in `.plain`, which the pilot tests read.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from tui import model


class ClusterHeader(Static):
    """Quorum, master, node count: the first thing an operator looks at."""

    plain = ""

    def show(self, snap: model.Snapshot | None, stale: bool = False) -> None:
        text = Text()
        if snap is None:
            text.append("cluster state unknown (no answer from the API yet)", style="bold red")
        else:
            for i, (label, value, kind) in enumerate(model.header_parts(snap)):
                if i:
                    text.append("   ")
                text.append(f"{label}: ", style="bold")
                text.append(value, style={"ok": "green", "bad": "bold red", "warn": "yellow"}.get(kind, ""))
            text.append(f"   updated {model.format_clock(snap.wall_time_s)[11:]}", style="dim")
            if stale:
                text.append("  (stale)", style="bold yellow")
        self.plain = text.plain
        self.update(text)


class StatusBar(Static):
    """One line: the last action's result or the last API error. Never more than one line."""

    plain = ""
    kind = "info"

    def show(self, line: str, kind: str = "info") -> None:
        self.plain = " ".join(line.split())
        self.kind = kind
        self.set_classes(f"status-{kind}")
        self.update(Text(self.plain))


def _kv(items: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in items.items())


def detail_text(sid: str | None, snap: model.Snapshot | None, events: list[dict[str, Any]]) -> Text:
    """The service's config, its CRM status and the recent history that names it."""
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
    for key in ("type", "state", "node", "group", "max_restart", "max_relocate", "failback", "comment"):
        if key in res:
            value = res[key]
            if isinstance(value, bool):
                value = int(value)
            text.append(f"  {key:<13}", style="bold")
            text.append(f"{value}\n")
    for key, value in sorted((res.get("params") or {}).items()):
        text.append(f"  {'param':<13}", style="bold")
        text.append(f"{key}={value}\n")
    for what, problem in sorted((res.get("errors") or {}).items()):
        text.append(f"  {what}: {problem}\n", style="red")
    status = snap.service_status(sid)
    text.append("CRM status\n", style="underline")
    if not status:
        text.append("  not yet seen by the CRM (queued)\n", style="dim")
    for key in sorted(status):
        text.append(f"  {key:<13}", style="bold")
        text.append(f"{status[key]}\n")
    text.append("recent events\n", style="underline")
    if not events:
        text.append("  none read since the TUI started\n", style="dim")
    for event in events[-15:]:
        text.append(f"  {model.format_clock(event.get('ts'))[11:]}  #{event.get('seq')}  ", style="dim")
        text.append(f"{event.get('op')}  ", style="bold" if event.get("ok", True) else "bold red")
        text.append(model.event_summary(event) + "\n")
    return text


class ServiceDetail(Static):
    plain = ""

    def show(self, sid: str | None, snap: model.Snapshot | None, events: list[dict[str, Any]]) -> None:
        text = detail_text(sid, snap, events)
        self.plain = text.plain
        self.update(text)
