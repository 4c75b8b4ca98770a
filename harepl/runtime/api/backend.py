"""The narrow door between the local API and the daemon: the `ApiBackend` protocol.

The API server never touches the store, Raft or the roles directly. It reads one
consistent `ClusterState` and submits write commands; the daemon (runtime helper)
implements this over the replicated store client, `LocalStoreBackend` implements it over
a node's own SQLite file (single node, no Raft).

Write commands are the store's own vocabulary (harepl/store/commands.py) without the
envelope: `{"op": OP, ...fields}`; the backend adds `v`, `id` and `ts` (e.g. with
`harepl.store.vocabulary.make(**command)`) and proposes it. One user action is one command,
so a write is applied whole or rejected whole, never partially. The API sends only:

    resource_add {sid, config}            resource_update {sid, changes, delete?, digest?}
    resource_remove {sid}                 group_set {name, config}   (a new group)
    resource_purge {sid}   (remove, and out of every rule: v3)
    group_update {name, changes, delete?, digest?}
    group_remove {name}                   rule_set {rule_id, rule}   (a new rule)
    rule_update {rule_id, changes, delete?, digest?}
    rule_remove {rule_id}                 crm_command_enqueue {cmd}  ("migrate SID NODE", ...)
    dc_options_set {options, delete?, digest?}

Edits are field-level (*_update, dc_options_set): apply merges the named fields into the
object as it is then, so two operators changing different fields both win. A `digest`
(the one the API returned with the object) makes apply refuse the edit if the object
changed since it was read (409, "config changed meanwhile (digest mismatch) ...").

Values are already validated and normalised by the API (`validate.py`) into the
harepl.core.types shapes; the store's apply checks them again (the authority) and may still
reject, e.g. when a concurrent writer won; the API then answers 409 with apply's message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

WRITE_OPS = (
    "resource_add", "resource_set", "resource_update", "resource_remove", "resource_purge", "group_set",
    "group_update",
    "group_remove", "rule_set", "rule_update", "rule_remove", "crm_command_enqueue", "dc_options_set",
)


@dataclass(frozen=True)
class ClusterState:
    """Everything a reader needs, read at one point of the log (shapes of harepl.core.types).

    `manager_status` and each `lrm_status[node]` may carry a `"timestamp"` (wall-clock
    seconds written by their author): it is shown to humans only, never used to decide.
    """

    node: str                                   # the node serving this API
    quorate: bool
    manager_status: dict[str, Any] = field(default_factory=dict)
    lrm_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: tuple[str, ...] = ()                 # cluster members by configuration
    datacenter: dict[str, dict[str, Any]] = field(default_factory=dict)   # {"ha": {..}, "crs": {..}}
    node_stats: dict[str, dict[str, float]] = field(default_factory=dict)  # node -> maxcpu, maxmem


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one submitted command. `ok=False` is a rejection recorded by apply."""

    ok: bool
    error: str | None = None                    # one line, shown to the operator as is
    result: Any = None


class BackendUnavailable(Exception):
    """The backend cannot answer now (no quorum, commit timeout, store closed).

    The message is one line for the operator; the API answers 503 with it.
    """


@runtime_checkable
class ApiBackend(Protocol):
    def read_state(self, fresh: bool = False) -> ClusterState:
        """The cluster as this node knows it.

        fresh=True is asked before validating a write: the backend should then read behind a
        barrier (or at the leader) so that a change acknowledged a moment ago is seen.
        May raise BackendUnavailable.
        """
        ...

    def read_events(self, after_seq: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """History, oldest first: entries with seq > after_seq (at most `limit`), or the
        most recent `limit` entries when after_seq is None.

        Each is the store's event dict: `{"seq", "ts", "id", "op", "ok", "detail"}`.
        """
        ...

    def submit(self, command: dict[str, Any]) -> WriteResult:
        """Commit one write command (see module docstring); wait for its result.

        Returns WriteResult(ok=False, error=...) when apply rejected it; raises
        BackendUnavailable when it could not be committed in time.
        """
        ...
