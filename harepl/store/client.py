"""Client API of the replicated store (what the runtime's Env is built on).

    from harepl.store.raft import StoreNode, RaftSettings
    from harepl.store.client import Client
    from harepl.store import vocabulary as C

    node = StoreNode("10.0.0.1:7100", ["10.0.0.1:7100", "10.0.0.2:7100", ...],
                     data_dir="/var/lib/harepl/store", secret=open(secret_file).read())
    store = Client(node)
    r = store.submit(C.lease_renew("manager", "n1", epoch), timeout_s=2.0)

Calls (all thread-safe; never call them from inside a StoreNode callback):

- ``submit(cmd, timeout_s)`` -> result dict.  Proposes a command built with
  `harepl.store.vocabulary` (which gives it a unique id) and waits until *this* node has
  applied it.  Retries with the same id on leader changes; after an error or a lost
  callback it looks the id up locally (a timed-out call may have committed).  Returns
  the result whether ``ok`` is true or a recorded rejection.  Raises `StoreUnavailable`
  (a `harepl.store.errors.StoreUnavailableError`) if not committed within ``timeout_s``:
  no quorum, or no leader.  The outcome is then unknown; retrying the same command
  object (same id) later is always safe.  A command of a newer vocabulary version than
  some running node knows is refused without proposing it (reason ``unsupported``).
- ``submit_checked(cmd, timeout_s)`` -> result dict with ``ok`` true; raises
  `harepl.store.errors.StaleLeaseError` for a stale epoch, `Rejected` for any other rejection.
- ``barrier(timeout_s)``: commits a no-op and waits until this node applied it.  Every
  entry committed before the call is then visible locally.
- ``read(fn, linearizable=True, timeout_s)`` -> fn(sqlite3.Connection).  Linearizable
  reads **commit a barrier first** (not leader reads): simple, correct on any node,
  and costs one commit (~1 ms).  ``linearizable=False`` reads the local copy (may lag).
- Shortcuts, each ``(linearizable=True, timeout_s=...)``: ``manager_status()``,
  ``lrm_status(node)``, ``lrm_statuses()``, ``service_config()``, ``groups()``,
  ``rules()``, ``crm_commands()``, ``leases()``, ``lease(name)``, ``nodes()``,
  ``events(limit, rejected_only)``, ``dump()`` (SQLite's text dump).
- ``quorate()``: this node can commit now (fresh heartbeats from a majority, judged on
  this node's monotonic clock; a node in a minority learns it within
  ``RaftSettings.quorum_timeout_s`` + ``leader_fallback_timeout_s``).
- ``status()``: {"addr", "state", "leader", "quorum", "term", "commit_index",
  "last_applied", "members", "log_len", "fsyncs", "bad_connections"}.
- ``is_leader()``: Raft leader *and* quorate (informational; safety comes from leases).
- ``add_member(addr, timeout_s)`` / ``remove_member(addr, timeout_s)``: one membership
  change at a time; `ValueError` with one clear line if it would lose quorum or another
  change is in progress.  (Raft membership only; the HA node list is the ``nodes`` table,
  changed with ``C.node_add`` / ``C.node_remove``.)

Lease judgement helpers live in `harepl.store.leases` (pure, monotonic-clock only).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from . import reads
from . import vocabulary as C
from .errors import StaleLeaseError, StoreUnavailableError
from .raft import StoreNode

DEFAULT_TIMEOUT_S = 5.0
_RETRY_PAUSE_S = 0.05
_LOOKUP_EVERY_S = 0.25


class StoreUnavailable(StoreUnavailableError):
    """Not committed within the timeout (no quorum / no leader); outcome unknown."""


class Rejected(Exception):
    """A command was applied as a recorded rejection (other than a stale epoch)."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(f"{result.get('reason')}: {result.get('error')}")
        self.result = result


class Client:
    def __init__(self, node: StoreNode, default_timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.node = node
        self.default_timeout_s = default_timeout_s

    # -- writes ---------------------------------------------------------------------------

    def submit(self, cmd: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        timeout_s = self.default_timeout_s if timeout_s is None else timeout_s
        cid = cmd.get("id")
        if not isinstance(cid, str) or not cid:
            raise ValueError("command without an id: build it with harepl.store.vocabulary")
        refused = self._refuse_if_cluster_behind(cmd)
        if refused is not None:
            return refused
        raw = C.encode(cmd)
        deadline = time.monotonic() + timeout_s
        last_err = "timeout"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            done = threading.Event()
            box: dict[str, Any] = {}

            def cb(res: dict[str, Any] | None, err: str | None, box: dict[str, Any] = box,
                   done: threading.Event = done) -> None:
                box["res"], box["err"] = res, err
                done.set()

            self.node.submit_async(raw, cb)
            # wait in slices: a callback lost in a snapshot install must not cost the
            # whole timeout -- the id's result is in the installed database
            known = None
            while not done.wait(min(_LOOKUP_EVERY_S, max(0.0, deadline - time.monotonic()))):
                known = self.node.result_of(cid)
                if known is not None or time.monotonic() >= deadline:
                    break
            if known is not None:
                return known
            if done.is_set() and box["err"] is None and box["res"] is not None:
                return dict(box["res"])
            # error or timeout: the command may still have committed
            known = self.node.result_of(cid)
            if known is not None:
                return known
            last_err = box.get("err") or "timeout"
            if not done.is_set():
                break
            time.sleep(min(_RETRY_PAUSE_S, max(0.0, deadline - time.monotonic())))
        known = self.node.result_of(cid)
        if known is not None:
            return known
        raise StoreUnavailable(f"command {cmd.get('op')} {cid} not committed within {timeout_s:g}s "
                               f"({last_err}; quorum={self.node.has_quorum()})")

    def _refuse_if_cluster_behind(self, cmd: dict[str, Any]) -> dict[str, Any] | None:
        """A command newer than version 1 is proposed only when every running node knows
        its version (each LRM status says which it knows); an older node would have to
        stop on it (apply.TooNew).  The refusal is a rejection that nothing committed."""
        version = cmd.get("v")
        if not isinstance(version, int) or version <= 1:
            return None
        behind = {n: v for n, v in self.node.read(reads.vocab_versions).items() if v < version}
        if not behind:
            return None
        names = ", ".join(f"{n} (v{v})" for n, v in sorted(behind.items()))
        return {"ok": False, "reason": "unsupported",
                "error": f"{cmd.get('op')} needs command version {version}, but {names} run an older "
                         "harepl: upgrade every node first"}

    def submit_checked(self, cmd: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        r = self.submit(cmd, timeout_s)
        if r.get("ok"):
            return r
        if r.get("reason") == "stale_epoch":
            raise StaleLeaseError(r.get("error", "stale epoch"))
        raise Rejected(r)

    def barrier(self, timeout_s: float | None = None) -> None:
        self.submit(C.noop(), timeout_s)

    # -- reads ----------------------------------------------------------------------------

    def read(self, fn: Callable[[sqlite3.Connection], Any], linearizable: bool = True,
             timeout_s: float | None = None) -> Any:
        if linearizable:
            self.barrier(timeout_s)
        return self.node.read(fn)

    def _r(self, fn: Callable[..., Any], *args: Any, linearizable: bool = True,
           timeout_s: float | None = None) -> Any:
        return self.read(lambda c: fn(c, *args), linearizable, timeout_s)

    def manager_status(self, **kw: Any) -> dict[str, Any]:
        return self._r(reads.manager_status, **kw)  # type: ignore[no-any-return]

    def lrm_status(self, node: str, **kw: Any) -> dict[str, Any] | None:
        return self._r(reads.lrm_status, node, **kw)  # type: ignore[no-any-return]

    def lrm_statuses(self, **kw: Any) -> dict[str, dict[str, Any]]:
        return self._r(reads.lrm_statuses, **kw)  # type: ignore[no-any-return]

    def service_config(self, **kw: Any) -> dict[str, dict[str, Any]]:
        return self._r(reads.service_config, **kw)  # type: ignore[no-any-return]

    def groups(self, **kw: Any) -> dict[str, dict[str, Any]]:
        return self._r(reads.groups, **kw)  # type: ignore[no-any-return]

    def rules(self, **kw: Any) -> dict[str, dict[str, Any]]:
        return self._r(reads.rules, **kw)  # type: ignore[no-any-return]

    def crm_commands(self, **kw: Any) -> list[tuple[int, str]]:
        return self._r(reads.crm_commands, **kw)  # type: ignore[no-any-return]

    def leases(self, **kw: Any) -> dict[str, dict[str, Any]]:
        return self._r(reads.leases, **kw)  # type: ignore[no-any-return]

    def lease(self, name: str, **kw: Any) -> dict[str, Any]:
        return self._r(reads.lease, name, **kw)  # type: ignore[no-any-return]

    def nodes(self, **kw: Any) -> dict[str, dict[str, Any]]:
        return self._r(reads.nodes, **kw)  # type: ignore[no-any-return]

    def events(self, limit: int = 100, rejected_only: bool = False, **kw: Any) -> list[dict[str, Any]]:
        return self._r(reads.events, limit, rejected_only, **kw)  # type: ignore[no-any-return]

    def dump(self, **kw: Any) -> str:
        return self._r(reads.dump, **kw)  # type: ignore[no-any-return]

    # -- cluster ----------------------------------------------------------------------------

    def quorate(self) -> bool:
        return self.node.has_quorum()

    def is_leader(self) -> bool:
        return self.node.is_leader()

    def status(self) -> dict[str, Any]:
        return self.node.status()

    def add_member(self, addr: str, timeout_s: float | None = None) -> None:
        self._membership("add", addr, timeout_s)

    def remove_member(self, addr: str, timeout_s: float | None = None) -> None:
        self._membership("remove", addr, timeout_s)

    def _membership(self, action: str, addr: str, timeout_s: float | None) -> None:
        timeout_s = self.default_timeout_s if timeout_s is None else timeout_s
        done = threading.Event()
        box: dict[str, Any] = {}

        def cb(res: dict[str, Any] | None, err: str | None) -> None:
            box["err"] = err
            done.set()

        self.node.change_membership(action, addr, cb)
        if not done.wait(timeout_s):
            raise StoreUnavailable(f"membership change ({action} {addr}) not committed within {timeout_s:g}s")
        if box["err"] == "REQUEST_DENIED":
            raise ValueError(f"cannot {action} {addr}: another membership change is still in progress "
                             "(or the new leader has not committed its first entry yet)")
        if box["err"] is not None:
            raise StoreUnavailable(f"membership change ({action} {addr}) failed: {box['err']}")
