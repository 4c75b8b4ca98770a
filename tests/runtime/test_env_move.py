"""An LRM's migration moves the configured node with a command fenced by its node lease,
and an indeterminate outcome (no quorum at the time) is retried with the same command id
until it is definite -- real two-member Raft store, in-process, real sockets.

Regression for the Jepsen finding `indeterminate-config-move`: the move committed after
the LRM had given up, the CRM saw a failed migration of a service registered on the
target, and the service ended in 'error'."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harepl.runtime.env import NodeContext, RuntimeEnv
from harepl.runtime.nodelog import NodeLog
from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.client import Client
from harepl.store.raft import StoreNode
from tests.support.store import free_port as _port
from tests.support.store import node_config as _cfg

pytestmark = pytest.mark.timeout(120)



def _wait(pred, what: str, limit_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < limit_s, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_move_is_fenced_and_retried_until_definite(tmp_path: Path) -> None:
    a1, a2 = f"127.0.0.1:{_port()}", f"127.0.0.1:{_port()}"
    s1 = StoreNode(a1, [a1, a2], str(tmp_path / "s1"), "test-secret")
    s2 = StoreNode(a2, [a1, a2], str(tmp_path / "s2"), "test-secret")
    stores = [s1, s2]
    try:
        c1 = Client(s1)
        _wait(c1.quorate, "quorum")
        stop = threading.Event()
        log = NodeLog("n1", tmp_path / "n.log")
        ctx = NodeContext(_cfg("n1", tmp_path), c1, None, None, stop)
        lrm = RuntimeEnv(ctx, "lrm", log.for_role("lrm"))
        c1.submit_checked(C.resource_add("exec:a", {"type": "exec", "state": "started", "node": "n1"}), 10)
        c1.submit_checked(C.resource_add("exec:b", {"type": "exec", "state": "started", "node": "n2"}), 10)
        _wait(lambda: ctx.keep_node_lease(log.for_role("lrm")), "the node lease")

        # a move of a service configured elsewhere is a definite rejection
        assert not lrm.move_service_config("exec:b", "n1")

        # no quorum while the move is proposed: n2 is down, so the first attempts time out
        s2.stop()
        stores.remove(s2)
        result: dict[str, bool] = {}
        mover = threading.Thread(target=lambda: result.setdefault("ok", lrm.move_service_config("exec:a", "n2")))
        mover.start()
        time.sleep(3 * ctx.commit_timeout_s)  # several timed-out attempts
        assert mover.is_alive(), "gave up on an indeterminate move"
        s2 = StoreNode(a2, [a1, a2], str(tmp_path / "s2"), "test-secret")
        stores.append(s2)
        mover.join(60)
        assert result == {"ok": True}
        svc = c1.read(lambda c: reads.service(c, "exec:a"), linearizable=True)
        assert svc is not None and svc["node"] == "n2"
        moves = [e for e in c1.read(lambda c: reads.events(c, 1000), linearizable=False)
                 if e["op"] == "resource_move" and e["ok"]]
        assert len(moves) == 1  # retried with one id: applied once

        # a holder whose lease was taken (the master fenced it: new epoch) is refused
        lease = c1.read(lambda c: reads.agent_lease_of(c, "n1"), linearizable=True)
        c1.submit_checked(C.lease_acquire(C.agent_lease("n1"), "n2", lease["epoch"], lease["seq"]), 10)
        assert not lrm.move_service_config("exec:a", "n1")
        rejected = c1.read(lambda c: reads.events(c, rejected_only=True), linearizable=False)
        assert any(e["op"] == "resource_move" and "stale_epoch" in e["detail"] for e in rejected)
    finally:
        for s in stores:
            s.stop()
