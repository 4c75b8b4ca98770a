"""The daemon's `ApiBackend`: the local API over the replicated store.

Reads come from this node's replica. A write (and the read that validates it, `fresh`)
commits a no-op barrier first, so a change acknowledged a moment ago on any node is seen
(linearizable read through the log, not a leader read). Writes are the store's own
commands; the API built and validated them.
"""

from __future__ import annotations

from typing import Any

from harepl.runtime.api.backend import BackendUnavailable, ClusterState, WriteResult
from harepl.runtime.api.local_backend import cluster_state, events_after, write_result
from harepl.store import vocabulary as C
from harepl.store.client import Client, StoreUnavailable


class DaemonBackend:
    def __init__(self, node: str, members: tuple[str, ...], client: Client, timeout_s: float = 5.0) -> None:
        self.node = node
        self.members = members
        self.client = client
        self.timeout_s = timeout_s

    def read_state(self, fresh: bool = False) -> ClusterState:
        quorate = self.client.quorate()
        if fresh and quorate:
            try:
                self.client.barrier(self.timeout_s)
            except StoreUnavailable as exc:
                raise BackendUnavailable(f"cluster not ready - {exc}") from None
        return self.client.read(lambda conn: cluster_state(conn, self.node, quorate, self.members),  # type: ignore[no-any-return]
                                linearizable=False)

    def read_events(self, after_seq: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self.client.read(lambda conn: events_after(conn, after_seq, limit),  # type: ignore[no-any-return]
                                linearizable=False)

    def submit(self, command: dict[str, Any]) -> WriteResult:
        fields = {k: v for k, v in command.items() if k != "op"}
        try:
            cmd = C.make(command["op"], **fields)
        except (KeyError, TypeError) as exc:
            return WriteResult(ok=False, error=f"bad command: {exc}")
        try:
            result = self.client.submit(cmd, self.timeout_s)
        except StoreUnavailable as exc:
            raise BackendUnavailable(f"cluster not ready - {exc}") from None
        return write_result(result)
