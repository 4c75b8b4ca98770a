"""What the TUI shows, computed from a data source's answers: no Textual, no sockets.

A `Snapshot` is one refresh (the API's answers, or the simulator's state in the same
shapes). Everything here turns it into table rows, the health bar and transition lines,
so it is tested without a terminal; it runs in the refresh worker thread, so the UI
thread only diffs ready rows.

Wall-clock time appears here for display only (ages shown to the operator), never for a
decision.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tui.words import event_detail, event_mentions, format_age, priorities, with_symbol

# Proxmox shows a status older than this as "old timestamp - dead?" (same value as the API)
STALE_AFTER_S = 30.0
# the CRM and every LRM write their status each loop: history hides these by default
STATUS_OPS = frozenset({"manager_status_set", "lrm_status_set"})
EVENTS_KEPT = 2000          # history kept in memory by the TUI
MOVING = frozenset({"migrate", "relocate", "request_start_balance"})


@dataclass(frozen=True)
class Snapshot:
    """One refresh: the API's answers, read one after the other (not one transaction)."""

    status: list[dict[str, Any]]            # GET /status/current (not read by the TUI: kept empty)
    manager: dict[str, Any]                 # GET /status/manager_status
    nodes: list[dict[str, Any]]             # GET /nodes
    resources: list[dict[str, Any]]         # GET /resources
    wall_time_s: float                      # when it was read (the simulator: its clock)
    lease_age: dict[str, float] | None = None   # node -> seconds since its node lease was renewed
    watchdog: dict[str, str] | None = None      # node -> armed/closed/expired (None: not known)
    restarts: dict[str, int] | None = None      # sid -> failed starts retried (None: not known)
    via: str = ""                               # the endpoint (or simulator) it came from

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
        return self._resources_by_sid.get(sid)

    @property
    def _resources_by_sid(self) -> dict[str, dict[str, Any]]:
        cached = self.__dict__.get("_by_sid")
        if cached is None:
            cached = {str(r.get("sid")): r for r in self.resources}
            object.__setattr__(self, "_by_sid", cached)
        return cached

    def service_status(self, sid: str) -> dict[str, Any]:
        return dict((self.manager_status.get("service_status") or {}).get(sid) or {})

    def node_names(self) -> list[str]:
        return [str(n["node"]) for n in self.nodes if n.get("node")]

    def node_state(self, node: str) -> str | None:
        return (self.manager_status.get("node_status") or {}).get(node)

    def fencing(self) -> tuple[str, str]:
        """('armed'|'disarming'|'disarmed', words): Proxmox's disarm-ha state."""
        disarm = self.manager_status.get("disarm") or {}
        how = str(((self.manager.get("datacenter") or {}).get("ha") or {}).get("fencing") or "watchdog")
        if not disarm:
            return "armed", "fencing armed" + ("" if how == "watchdog" else f" ({how})")
        state = str(disarm.get("state") or "disarmed")
        return state, f"fencing {state} (mode {disarm.get('mode', '?')})"

    def fence_status(self) -> dict[str, str]:
        """node -> what its fence devices did (hardware fencing only)."""
        return {str(k): str(v) for k, v in (self.manager_status.get("fence_status") or {}).items()}

    def lrm_age(self, node: str) -> float | None:
        stamp = (self.lrm_status.get(node) or {}).get("timestamp")
        return self.wall_time_s - float(stamp) if isinstance(stamp, int | float) else None

    def watchdog_of(self, node: str) -> str:
        """The node's watchdog: from the source when it knows, else from its LRM: an LRM
        in state active holds its watchdog open (it is closed in every other state)."""
        if self.watchdog is not None:
            return self.watchdog.get(node, "closed")
        if (self.lrm_status.get(node) or {}).get("watchdog_error"):
            return "error"
        entry = next((n for n in self.nodes if n.get("node") == node), {})
        state = entry.get("lrm_state")
        if state is None:
            return "-"
        age = self.lrm_age(node)
        if age is not None and age > STALE_AFTER_S:
            return "?"
        return "armed" if state == "active" else "closed"

    def agent_failure(self, sid: str) -> str:
        """The failed agent action the LRMs report for `sid` (exit code, node)."""
        failures = self.__dict__.get("_failures")
        if failures is None:        # once per snapshot: one pass over every LRM's results
            failures = {}
            for node, lrm in sorted(self.lrm_status.items(), reverse=True):
                for result in (lrm.get("results") or {}).values():
                    if isinstance(result, dict) and result.get("exit_code") not in (0, None):
                        failures[result.get("sid")] = f"exit {result['exit_code']} on {node}"
            object.__setattr__(self, "_failures", failures)
        return str(failures.get(sid, "-"))


# ---------------------------------------------------------------- health bar

def health_parts(snap: Snapshot, compact: bool = False) -> list[tuple[str, str]]:
    """(text, style class) for the one-line health bar, most important first; `compact`
    for narrow terminals (the same facts in fewer words)."""
    names = snap.node_names()
    online = sum(1 for n in names if snap.node_state(n) == "online")
    fenced = [n for n in names if snap.node_state(n) in ("fence", "unknown")]
    master = snap.master_node
    states: dict[str, int] = {}
    for res in snap.resources:
        state = snap.service_status(str(res.get("sid"))).get("state") or "queued"
        states[state] = states.get(state, 0) + 1
    bad = sum(v for k, v in states.items() if k in ("error", "fence", "recovery"))
    fence_state, fence_words = snap.fencing()
    devices = snap.fence_status()
    if devices:
        fence_words += "; " + "; ".join(f"{n}: {t}" for n, t in sorted(devices.items()))
    nodes_kind = "ok" if names and online == len(names) else "bad" if fenced else "warn"
    if compact:
        return [
            ("✔ quorate" if snap.quorate else "✖ NO QUORUM", "ok" if snap.quorate else "bad"),
            (f"master {master}" if master else "no master", "ok" if master else "bad"),
            (f"{online}/{len(names)} online" + (f" ({','.join(fenced)} lost)" if fenced else ""), nodes_kind),
            ("armed" if fence_state == "armed" else fence_state, "ok" if fence_state == "armed" else "warn"),
            (f"{len(snap.resources)} svc: " + (" ".join(f"{n}{with_symbol(s)[0]}" for s, n in sorted(states.items()))
                                               or "none"), "bad" if bad else "ok"),
        ]
    return [
        ("✔ quorate" if snap.quorate else f"✖ NO QUORUM on {snap.api_node}", "ok" if snap.quorate else "bad"),
        (f"master {master}" if master else "no master", "ok" if master else "bad"),
        (f"nodes {online}/{len(names)} online" + (f" ({', '.join(fenced)} fenced/unknown)" if fenced else ""),
         nodes_kind),
        (fence_words, "ok" if fence_state == "armed" else "warn"),
        (f"services {len(snap.resources)}: " + (", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"),
         "bad" if bad else "ok"),
    ]


# ---------------------------------------------------------------- tables

NODE_COLUMNS = ("node", "state", "LRM", "LRM mode", "watchdog", "lease", "svcs")
# rst: restarts tried/max_restart; rel: relocations (failed nodes)/max_relocate
SERVICE_COLUMNS = ("sid", "requested", "CRM state", "node", "target", "rst", "rel", "changed", "reason",
                   "agent failure")
NODE_STATE_COLUMNS = (1, 2, 4)
SERVICE_STATE_COLUMNS = (1, 2)

GROUP_COLUMNS = ("group", "nodes", "restricted", "nofailback", "comment")
RULE_COLUMNS = ("rule", "type", "resources", "nodes / affinity", "strict", "state", "comment")

Rows = list[tuple[str, tuple[str, ...]]]


def _flag(value: Any) -> str:
    return "yes" if value else "no"


def group_rows(groups: list[dict[str, Any]]) -> Rows:
    return [(str(g.get("group")), (str(g.get("group")), priorities(g.get("nodes")), _flag(g.get("restricted")),
                                   _flag(g.get("nofailback")), str(g.get("comment") or "")))
            for g in groups]


def rule_rows(rules: list[dict[str, Any]]) -> Rows:
    rows: Rows = []
    for r in rules:
        if r.get("type") == "node-affinity":
            where, strict = priorities(r.get("nodes")), _flag(r.get("strict"))
        else:
            where, strict = str(r.get("affinity") or "-"), "-"
        rows.append((str(r.get("rule")), (str(r.get("rule")), str(r.get("type")), ",".join(r.get("resources") or []),
                                          where, strict, "disabled" if r.get("disable") else "enabled",
                                          str(r.get("comment") or ""))))
    return rows


def node_rows(snap: Snapshot) -> Rows:
    """(row key, cells): node (★ master), CRM state, LRM state and mode, watchdog, lease
    age, services placed on it.

    Lease age: seconds since the node's lease was renewed as the API node sees it (its
    /metrics); without that, the age of the node's last LRM status write (written under
    its lease on every change and at least every 10 s), marked '~'.
    """
    count: dict[str, int] = {}
    for sd in (snap.manager_status.get("service_status") or {}).values():
        node = sd.get("node")
        count[node] = count.get(node, 0) + 1
    rows: Rows = []
    for entry in snap.nodes:
        name = str(entry.get("node"))
        mode, state = entry.get("lrm_mode"), entry.get("lrm_state")
        lrm_age = snap.lrm_age(name)
        if state is not None and lrm_age is not None and lrm_age > STALE_AFTER_S:
            state_text = "✖ old timestamp"
        else:
            state_text = with_symbol(state)
        if snap.lease_age is not None and name in snap.lease_age:
            lease = format_age(snap.lease_age[name])
        else:
            lease = "-" if lrm_age is None else f"~{format_age(lrm_age)}"
        marker = " ★" if entry.get("master") or snap.master_node == name else ""
        rows.append((name, (name + marker, with_symbol(entry.get("status") or snap.node_state(name)),
                            state_text, str(mode or "-"), with_symbol(snap.watchdog_of(name)), lease,
                            str(count.get(name, 0)))))
    return rows


@dataclass
class Change:
    """The last state change of one service the TUI saw, and why (as far as it can tell)."""

    at_s: float
    state: str
    reason: str


def change_reason(old: Snapshot, new: Snapshot, sid: str, before: dict[str, Any], sd: dict[str, Any]) -> str:
    """Why a service changed state or node, from what else changed in the same refresh."""
    state, node = sd.get("state"), before.get("node")
    if sd.get("node") != node:
        if before.get("state") in MOVING:
            return f"arrived from {node}"
        if before.get("state") in ("fence", "recovery") or new.node_state(str(node)) in ("fence", "unknown"):
            return f"recovered from {node}"
        return f"moved from {node}"
    if state in ("fence", "recovery"):
        node_state = new.node_state(str(node)) or "lost"
        return f"{node} {({'fence': 'fenced', 'unknown': 'unreachable'}).get(node_state, node_state)}"
    if state in MOVING:
        return f"{str(state).split('_', 1)[0]} asked"
    if state == "error":
        failure = new.agent_failure(sid)
        return failure if failure != "-" else "agent action failed"
    if state == "freeze":
        disarm = new.manager_status.get("disarm") or {}
        return f"HA disarmed ({disarm.get('mode', '?')})" if disarm else f"{node} shutting down"
    old_req = (old.resource(sid) or {}).get("state")
    new_req = (new.resource(sid) or {}).get("state")
    if old_req != new_req:
        return f"requested {new_req}"
    if state == "request_stop" and sd.get("timeout") is not None:
        return f"stop asked (timeout {sd['timeout']}s)"
    return "-"


def track_changes(old: Snapshot, new: Snapshot, changes: dict[str, Change]) -> None:
    """Update `changes` (sid -> last change seen) from one refresh to the next."""
    old_ss = old.manager_status.get("service_status") or {}
    for sid, sd in (new.manager_status.get("service_status") or {}).items():
        before = old_ss.get(sid)
        if before is None or before.get("state") != sd.get("state") or before.get("node") != sd.get("node"):
            reason = "now managed" if before is None else change_reason(old, new, sid, before, sd)
            changes[sid] = Change(new.wall_time_s, str(sd.get("state")), reason)
    for sid in [s for s in changes if new.resource(s) is None]:
        del changes[sid]


def service_rows(snap: Snapshot, changes: dict[str, Change] | None = None) -> Rows:
    """(sid, cells) per SERVICE_COLUMNS. CRM state as `ha-manager status` says it."""
    changes = changes or {}
    rows: Rows = []
    ss = snap.manager_status.get("service_status") or {}
    restarts = snap.restarts
    for res in snap.resources:
        sid = str(res.get("sid"))
        sd = ss.get(sid) or {}
        requested = str(res.get("state") or "-")
        # a resource the CRM has not seen yet is what Proxmox calls queued
        state = sd.get("state") or ("ignored" if requested == "ignored" else "queued")
        node = sd.get("node") or res.get("node") or "-"
        failed = sd.get("failed_nodes") or []
        relocations = f"{len(failed)}/{res.get('max_relocate', 1)}"
        tries = "-" if restarts is None else str(restarts.get(sid, 0))
        change = changes.get(sid)
        if change is None:
            last, reason = "-", "-"
        else:
            last = f"{format_age(snap.wall_time_s - change.at_s)} ago"
            reason = change.reason
        rows.append((sid, (sid, with_symbol(requested), with_symbol(str(state)), str(node), str(sd.get("target") or "-"),
                           f"{tries}/{res.get('max_restart', 1)}", relocations, last, reason,
                           snap.agent_failure(sid))))
    return rows


def sort_rows(rows: Rows, column: int, reverse: bool = False) -> Rows:
    """Rows by one column's value (the state word without its symbol), then by key."""
    if column == 0 and not reverse:
        return rows

    def key(row: tuple[str, tuple[str, ...]]) -> tuple[str, str]:
        value = row[1][column] if column < len(row[1]) else ""
        words = value.split(" ", 1)
        if len(words) == 2 and len(words[0]) == 1 and not words[0].isalnum():
            value = words[1]
        return value, row[0]

    return sorted(rows, key=key, reverse=reverse)


def filter_rows(rows: Rows, text: str) -> Rows:
    """Rows where every word of `text` appears in some cell (case-insensitive)."""
    words = text.lower().split()
    if not words:
        return rows
    return [(key, cells) for key, cells in rows
            if all(any(word in cell.lower() for cell in cells) for word in words)]


# ---------------------------------------------------------------- observed transitions

def transitions(old: Snapshot, new: Snapshot) -> list[tuple[str | None, str]]:
    """What changed between two refreshes, as (sid or None, line) in plain words.

    The store's history has the commands; the CRM's state changes are inside its status
    writes, so the TUI notes the ones it sees (at refresh granularity: a state held for
    less than one refresh is missed).
    """
    out: list[tuple[str | None, str]] = []
    if old.quorate != new.quorate:
        out.append((None, f"quorum {'regained' if new.quorate else 'lost'} on {new.api_node}"))
    if old.master_node != new.master_node:
        out.append((None, f"master changed from {old.master_node or 'none'} to {new.master_node or 'none'}"))
    old_nodes = old.manager_status.get("node_status") or {}
    for node, state in sorted((new.manager_status.get("node_status") or {}).items()):
        before = old_nodes.get(node)
        if before is not None and before != state:
            out.append((None, f"node {node}: {before} → {state}"))
    old_services = old.manager_status.get("service_status") or {}
    for sid, sd in sorted((new.manager_status.get("service_status") or {}).items()):
        before = old_services.get(sid)
        if before is None:
            if old.resource(sid) is not None:
                out.append((sid, f"service {sid}: now managed, {sd.get('state')} on {sd.get('node')}"))
            continue
        moved = before.get("node") != sd.get("node")
        if before.get("state") != sd.get("state") or moved:
            where = f" on {sd.get('node')}" + (f" (was {before.get('node')})" if moved else "")
            out.append((sid, f"service {sid}: {before.get('state')} → {sd.get('state')}{where}"))
    for sid in sorted({str(r.get("sid")) for r in old.resources} - {str(r.get("sid")) for r in new.resources}):
        out.append((sid, f"service {sid}: removed from the configuration"))
    return out


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
            # the detail parsed once here, not on every redraw that filters the history
            self.kept.append({**event, "detail": event_detail(event), "key": f"seq-{seq}"})
            added += 1
        self.version += added > 0
        return added

    def reset(self) -> None:
        """A new source (another member's store numbers its events alike, a restarted
        simulation does not): read from its latest page on."""
        self.last_seq = None

    def for_service(self, sid: str, limit: int = 50) -> list[dict[str, Any]]:
        return [e for e in self.kept if event_mentions(e, sid)][-limit:]
