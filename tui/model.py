"""What the TUI shows, computed from API answers: no Textual, no sockets.

`fetch_snapshot` is the only function here that talks to the API (through the blocking
`ApiClient`, so it runs in a worker thread). Everything else turns plain API data into
table rows and lines, so it is tested without a terminal.

Wall-clock time appears here for display only (ages and clock times shown to the
operator), never for a decision.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harepl.runtime.api.client import ApiClient, ApiClientError

# Proxmox shows a status older than this as "old timestamp - dead?" (same value as the API)
STALE_AFTER_S = 30.0
# the CRM and every LRM write their status each loop: history hides these by default
STATUS_OPS = frozenset({"manager_status_set", "lrm_status_set"})
EVENTS_PAGE = 1000          # the API's largest page
EVENTS_KEPT = 2000          # history kept in memory by the TUI


@dataclass(frozen=True)
class Snapshot:
    """One refresh: the API's answers, read one after the other (not one transaction)."""

    status: list[dict[str, Any]]            # GET /status/current
    manager: dict[str, Any]                 # GET /status/manager_status
    nodes: list[dict[str, Any]]             # GET /nodes
    resources: list[dict[str, Any]]         # GET /resources
    wall_time_s: float                      # when it was read (display only)

    @property
    def quorate(self) -> bool:
        return bool(self.manager.get("quorum", {}).get("quorate"))

    @property
    def api_node(self) -> str:
        return str(self.manager.get("quorum", {}).get("node") or "?")

    @property
    def manager_status(self) -> dict[str, Any]:
        return self.manager.get("manager_status") or {}

    @property
    def lrm_status(self) -> dict[str, dict[str, Any]]:
        return self.manager.get("lrm_status") or {}

    @property
    def master_node(self) -> str | None:
        return self.manager_status.get("master_node")

    def resource(self, sid: str) -> dict[str, Any] | None:
        return next((r for r in self.resources if r.get("sid") == sid), None)

    def service_status(self, sid: str) -> dict[str, Any]:
        return dict((self.manager_status.get("service_status") or {}).get(sid) or {})

    def node_names(self) -> list[str]:
        return [str(n["node"]) for n in self.nodes if n.get("node")]

    def node_state(self, node: str) -> str | None:
        return (self.manager_status.get("node_status") or {}).get(node)


def fetch_snapshot(client: ApiClient, now_wall_s: float | None = None) -> Snapshot:
    """Blocking: four GETs. Raises ApiClientError (one line) when the API fails."""
    return Snapshot(
        status=client.get("/status/current"),
        manager=client.get("/status/manager_status"),
        nodes=client.get("/nodes"),
        resources=client.get("/resources"),
        wall_time_s=time.time() if now_wall_s is None else now_wall_s,
    )


# ---------------------------------------------------------------- header

def header_parts(snap: Snapshot) -> list[tuple[str, str, str]]:
    """(label, value, style class) for the cluster header."""
    quorum = next((e for e in snap.status if e.get("type") == "quorum"), {})
    quorum_text = "OK" if snap.quorate else str(quorum.get("status") or "no quorum")
    master = snap.master_node
    master_entry = next((e for e in snap.status if e.get("type") == "master"), None)
    if master and master_entry is not None:
        # "node1 (active, Tue ...)": keep the word in parentheses, drop the long date
        inner = str(master_entry.get("status", "")).partition("(")[2].split(",", 1)[0].rstrip(")")
        master_text = f"{master} ({inner})" if inner else master
    else:
        master_text = master or "none"
    names = snap.node_names()
    online = sum(1 for n in names if snap.node_state(n) == "online")
    services = len(snap.resources)
    return [
        ("quorum", quorum_text, "ok" if snap.quorate else "bad"),
        ("master", master_text, "ok" if master else "bad"),
        ("nodes", f"{online}/{len(names)} online", "ok" if names and online == len(names) else "warn"),
        ("services", str(services), ""),
        ("api node", snap.api_node, ""),
    ]


# ---------------------------------------------------------------- tables

NODE_COLUMNS = ("node", "node state", "LRM", "LRM age")
SERVICE_COLUMNS = ("sid", "node", "state", "requested", "group")


GROUP_COLUMNS = ("group", "nodes", "restricted", "nofailback", "comment")
RULE_COLUMNS = ("rule", "type", "resources", "nodes / affinity", "strict", "state", "comment")


def _priorities(nodes: Any) -> str:
    """{node: prio} as Proxmox writes it: 'node1:2,node2' (priority 0 left out)."""
    if not isinstance(nodes, dict):
        return "-"
    return ",".join(f"{n}:{p}" if p else str(n) for n, p in sorted(nodes.items(), key=lambda kv: (-kv[1], kv[0])))


def _flag(value: Any) -> str:
    return "yes" if value else "no"


def group_rows(groups: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...]]]:
    return [(str(g.get("group")), (str(g.get("group")), _priorities(g.get("nodes")), _flag(g.get("restricted")),
                                   _flag(g.get("nofailback")), str(g.get("comment") or "")))
            for g in groups]


def rule_rows(rules: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...]]]:
    rows: list[tuple[str, tuple[str, ...]]] = []
    for r in rules:
        if r.get("type") == "node-affinity":
            where, strict = _priorities(r.get("nodes")), _flag(r.get("strict"))
        else:
            where, strict = str(r.get("affinity") or "-"), "-"
        rows.append((str(r.get("rule")), (str(r.get("rule")), str(r.get("type")), ",".join(r.get("resources") or []),
                                          where, strict, "disabled" if r.get("disable") else "enabled",
                                          str(r.get("comment") or ""))))
    return rows


def format_age(age_s: float | None) -> str:
    if age_s is None:
        return "-"
    age_s = max(0.0, age_s)
    if age_s < 120:
        return f"{age_s:.0f}s"
    if age_s < 7200:
        return f"{age_s / 60:.0f}m"
    return f"{age_s / 3600:.0f}h"


def node_rows(snap: Snapshot) -> list[tuple[str, tuple[str, ...]]]:
    """(row key, cells): node (★ for the master), CRM node state, LRM mode/state, LRM age.

    LRM age is the time since the node's LRM last wrote its status, under its node
    lease: on every change and at least every 10 s as a keep-alive, so an age past
    STALE_AFTER_S means a silent node (the API exposes no lease table; this is the
    LRM timestamp Proxmox's panel shows).
    """
    rows: list[tuple[str, tuple[str, ...]]] = []
    for entry in snap.nodes:
        name = str(entry.get("node"))
        lrm = snap.lrm_status.get(name) or {}
        stamp = lrm.get("timestamp")
        age = snap.wall_time_s - float(stamp) if isinstance(stamp, int | float) else None
        mode, state = entry.get("lrm_mode"), entry.get("lrm_state")
        if mode is None and state is None:
            lrm_text = "-"
        elif age is not None and age > STALE_AFTER_S:
            lrm_text = "old timestamp - dead?"
        elif mode == "active" or mode is None:
            lrm_text = str(state)
        else:
            lrm_text = f"{state} ({mode})"
        marker = " ★" if entry.get("master") else ""
        rows.append((name, (name + marker, str(entry.get("status") or "-"), lrm_text, format_age(age))))
    return rows


def service_rows(snap: Snapshot) -> list[tuple[str, tuple[str, ...]]]:
    """(sid, cells): sid, node, state (as `ha-manager status` says it), requested, group."""
    by_sid = {e.get("sid"): e for e in snap.status if e.get("type") == "service"}
    rows: list[tuple[str, tuple[str, ...]]] = []
    for res in snap.resources:
        sid = str(res.get("sid"))
        entry = by_sid.get(sid, {})
        node = entry.get("node") or res.get("node") or "-"
        # a resource added between the reads of /status/current and /resources: the CRM
        # has not seen it yet, which is what Proxmox calls queued
        fallback = "ignored" if res.get("state") == "ignored" else "queued"
        state = entry.get("state") or snap.service_status(sid).get("state") or fallback
        group = res.get("group") or "-"
        if res.get("errors", {}).get("group"):
            group = f"{group} (missing)"
        rows.append((sid, (sid, str(node), str(state), str(res.get("state") or "-"), str(group))))
    return rows


def filter_rows(rows: list[tuple[str, tuple[str, ...]]], text: str) -> list[tuple[str, tuple[str, ...]]]:
    """Rows where every word of `text` appears in some cell (case-insensitive)."""
    words = text.lower().split()
    if not words:
        return rows
    return [(key, cells) for key, cells in rows
            if all(any(word in cell.lower() for cell in cells) for word in words)]


def state_class(state: str) -> str:
    """A style name for a service or node state (the table colours it)."""
    word = state.split(" ", 1)[0]
    if word in ("started", "online", "active", "enabled"):
        return "ok"
    if word in ("error", "fence", "unknown", "gone", "old", "lost_agent_lock"):
        return "bad"
    if word in ("stopped", "disabled", "ignored", "-"):
        return "dim"
    return "warn"


# ---------------------------------------------------------------- history

def event_detail(event: dict[str, Any]) -> dict[str, Any]:
    raw = event.get("detail")
    if isinstance(raw, dict):
        return raw
    try:
        data = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {"text": str(raw)}
    return data if isinstance(data, dict) else {"value": data}


def event_summary(event: dict[str, Any]) -> str:
    """One line for an event: the CRM command as typed, or the detail compacted."""
    detail = event_detail(event)
    if event.get("op") == "crm_command_enqueue" and "cmd" in detail:
        text = str(detail["cmd"])
    elif event.get("op") == "observed":
        text = str(detail.get("text", ""))
    else:
        text = " ".join(f"{k}={json.dumps(v, sort_keys=True, separators=(',', ':'))}"
                        if not isinstance(v, str) else f"{k}={v}" for k, v in detail.items())
    if not event.get("ok", True):
        text = f"REJECTED {text}"
    return " ".join(text.split())


def transitions(old: Snapshot, new: Snapshot) -> list[tuple[str | None, str]]:
    """What changed between two refreshes, as (sid or None, line) in Proxmox's log shapes.

    The store's history has the commands; the CRM's state changes are inside its status
    writes, so the TUI notes the ones it sees (at refresh granularity: a state held for
    less than one refresh is missed).
    """
    out: list[tuple[str | None, str]] = []
    if old.quorate != new.quorate:
        out.append((None, f"quorum {'regained' if new.quorate else 'lost'} on node '{new.api_node}'"))
    if old.master_node != new.master_node:
        out.append((None, f"master changed from '{old.master_node}' to '{new.master_node}'"))
    old_nodes = old.manager_status.get("node_status") or {}
    for node, state in sorted((new.manager_status.get("node_status") or {}).items()):
        before = old_nodes.get(node)
        if before is not None and before != state:
            out.append((None, f"node '{node}': state changed from '{before}' => '{state}'"))
    old_services = old.manager_status.get("service_status") or {}
    for sid, sd in sorted((new.manager_status.get("service_status") or {}).items()):
        before = old_services.get(sid)
        if before is None:
            if old.resource(sid) is not None:
                out.append((sid, f"service '{sid}': now managed, state '{sd.get('state')}' on '{sd.get('node')}'"))
            continue
        if before.get("state") != sd.get("state"):
            out.append((sid, f"service '{sid}': state changed from '{before.get('state')}' to '{sd.get('state')}'"))
        if before.get("node") != sd.get("node"):
            out.append((sid, f"service '{sid}': node changed from '{before.get('node')}' to '{sd.get('node')}'"))
    for sid in sorted({str(r.get("sid")) for r in old.resources} - {str(r.get("sid")) for r in new.resources}):
        out.append((sid, f"service '{sid}': removed from the configuration"))
    return out


def event_mentions(event: dict[str, Any], sid: str) -> bool:
    detail = event_detail(event)
    if detail.get("sid") == sid:
        return True
    cmd = str(detail.get("cmd", ""))
    return sid in cmd.split() or sid in detail.get("resources", [])


def format_clock(ts: Any) -> str:
    if not isinstance(ts, int | float) or not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


@dataclass
class EventLog:
    """History the TUI has read so far, fetched incrementally by `after` seq.

    The API already leaves out the routine status writes (every loop of every node);
    any that still arrive are counted, not kept, so the history shows the config
    changes, CRM commands and rejections.
    """

    kept: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    last_seq: int | None = None
    status_writes: int = 0
    version: int = 0            # grows on every change: views redraw only then
    _observed: int = 0

    def observe(self, lines: Iterable[tuple[str | None, str]], wall_time_s: float) -> int:
        """Add transitions the TUI saw itself (op 'observed', no store seq)."""
        added = 0
        for sid, line in lines:
            self._observed += 1
            detail: dict[str, Any] = {"text": line}
            if sid is not None:
                detail["sid"] = sid
            self.kept.append({"key": f"obs-{self._observed}", "seq": None, "ts": wall_time_s,
                              "op": "observed", "ok": True, "detail": detail})
            added += 1
        self.version += added > 0
        return added

    def add(self, events: Iterable[dict[str, Any]]) -> int:
        added = 0
        for event in events:
            seq = event.get("seq")
            if not isinstance(seq, int) or (self.last_seq is not None and seq <= self.last_seq):
                continue
            self.last_seq = seq
            if event.get("op") in STATUS_OPS and event.get("ok", True):
                self.status_writes += 1
                continue
            self.kept.append({**event, "key": f"seq-{seq}"})
            added += 1
        self.version += added > 0
        return added

    def for_service(self, sid: str, limit: int = 50) -> list[dict[str, Any]]:
        return [e for e in self.kept if event_mentions(e, sid)][-limit:]


def _events_page(client: ApiClient, **query: Any) -> list[dict[str, Any]]:
    try:
        return list(client.get("/events", include_status=0, **query))
    except ApiClientError as exc:
        # a daemon older than include_status (a rolling upgrade): everything, filtered here
        if exc.status == 400 and "include_status" in exc.message:
            return list(client.get("/events", **query))
        raise


def fetch_events(client: ApiClient, after_seq: int | None, max_pages: int = 5) -> list[dict[str, Any]]:
    """Blocking: events after `after_seq` (the latest page when None), oldest first.

    The API leaves out the routine status writes (`include_status=0`; their rejections
    stay), so a page reaches further back than a page of everything would.
    """
    if after_seq is None:
        return _events_page(client, limit=EVENTS_PAGE)
    out: list[dict[str, Any]] = []
    for _ in range(max_pages):
        page = _events_page(client, after=after_seq, limit=EVENTS_PAGE)
        out.extend(page)
        if len(page) < EVENTS_PAGE:
            break
        after_seq = page[-1]["seq"]
    return out
