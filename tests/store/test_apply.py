"""apply(): deterministic, idempotent, fenced; rejections recorded the same everywhere."""

from __future__ import annotations

import json
import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.apply import StoreFault, apply
from harepl.store.schema import connect


def db() -> sqlite3.Connection:
    return connect(":memory:")


def ok(conn: sqlite3.Connection, cmd: dict) -> dict:
    r = apply(conn, C.encode(cmd))
    assert r["ok"], r
    return r


def acquire(conn: sqlite3.Connection, lease: str, holder: str) -> int:
    cur = reads.lease(conn, lease)
    return ok(conn, C.lease_acquire(lease, holder, cur["epoch"], cur["seq"], ts=1.0))["epoch"]


def test_lease_cas_grants_once_and_increments_epoch() -> None:
    conn = db()
    a = C.lease_acquire("manager", "n1", 0, 0, ts=1.0)
    b = C.lease_acquire("manager", "n2", 0, 0, ts=1.0)
    ra, rb = apply(conn, a), apply(conn, b)
    assert ra["ok"] and ra["epoch"] == 1
    assert not rb["ok"] and rb["reason"] == "conflict"
    # renewals change seq: an acquirer that saw an older seq loses
    ok(conn, C.lease_renew("manager", "n1", 1, ts=2.0))
    r = apply(conn, C.lease_acquire("manager", "n2", 1, 1, ts=3.0))
    assert not r["ok"] and r["reason"] == "conflict"
    r = ok(conn, C.lease_acquire("manager", "n2", 1, 2, ts=3.0))
    assert r["epoch"] == 2 and reads.manager_lease(conn)["holder"] == "n2"


def test_stale_epoch_commands_are_rejected_and_recorded() -> None:
    conn = db()
    e1 = acquire(conn, "manager", "n1")
    ok(conn, C.manager_status_set({"master_node": "n1"}, e1, ts=1.0))
    e2 = acquire(conn, "manager", "n2")
    assert e2 == e1 + 1
    for cmd in (C.manager_status_set({"master_node": "n1"}, e1, ts=2.0),
                C.lease_renew("manager", "n1", e1, ts=2.0),
                C.crm_command_consume(10, e1, ts=2.0),
                C.resource_remove("vm:1", epoch=e1, ts=2.0)):
        r = apply(conn, C.encode(cmd))
        assert not r["ok"] and r["reason"] == "stale_epoch", r
    assert reads.manager_status(conn) == {"master_node": "n1"}
    rej = reads.events(conn, rejected_only=True)
    assert [e["op"] for e in rej] == ["manager_status_set", "lease_renew", "crm_command_consume",
                                      "resource_remove"]
    assert all("stale_epoch" in e["detail"] for e in rej)


def test_released_lease_fences_its_old_epoch() -> None:
    conn = db()
    e = acquire(conn, "agent:n1", "n1")
    ok(conn, C.lrm_status_set("n1", {"mode": "active"}, e, ts=1.0))
    ok(conn, C.lease_release("agent:n1", "n1", e, ts=1.0))
    r = apply(conn, C.lrm_status_set("n1", {"mode": "active"}, e, ts=2.0))
    assert r["reason"] == "stale_epoch"
    assert acquire(conn, "agent:n1", "n1") == e + 1


def test_duplicate_id_changes_nothing_and_returns_first_result() -> None:
    conn = db()
    cmd = C.crm_command_enqueue("migrate vm:1 n2", ts=1.0)
    r1 = apply(conn, C.encode(cmd))
    before = reads.dump(conn)
    r2 = apply(conn, C.encode(cmd))
    assert reads.dump(conn) == before
    assert r2 == {**r1, "duplicate": True}
    # a rejected command retried is the same rejection, still one record
    bad = C.resource_set("vm:404", {"state": "stopped"}, ts=1.0)
    b1 = apply(conn, bad)
    b2 = apply(conn, bad)
    assert not b1["ok"] and b2 == {**b1, "duplicate": True}
    assert len(reads.events(conn, rejected_only=True)) == 1


def test_constraint_violation_is_a_rejection_and_rolls_back() -> None:
    conn = db()
    before = reads.dump(conn)
    r = apply(conn, C.resource_add("vm:1", {"node": "n1", "group": "nosuch"}, ts=1.0))
    assert not r["ok"] and r["reason"] == "constraint" and "FOREIGN KEY" in r["error"]
    assert reads.service_config(conn) == {}
    assert reads.dump(conn) != before  # only the rejection record and counter changed
    ok(conn, C.group_set("g", {"nodes": {"n1": 1}}, ts=1.0))
    ok(conn, C.resource_add("vm:1", {"node": "n1", "group": "g", "state": "enabled"}, ts=1.0))
    r = apply(conn, C.group_remove("g", ts=1.0))
    assert r["reason"] == "constraint"
    assert reads.service_config(conn)["vm:1"] == {
        "type": "vm", "state": "started", "node": "n1", "group": "g", "max_restart": 1,
        "max_relocate": 1, "failback": True}


def test_garbage_commands_are_recorded_rejections() -> None:
    # (a version *newer* than this node knows is not garbage: the node stops, see
    # test_versions.py; an unknown older one is)
    conn = db()
    for raw in (b"\xff\xfe", "not json", "[1,2]", json.dumps({"v": 0, "id": "x", "op": "noop", "ts": 1}),
                json.dumps({"v": 1, "id": "y", "op": "bogus", "ts": 1}),
                json.dumps({"v": 1, "id": "z", "op": "noop", "ts": 1, "extra": 1}),
                json.dumps({"v": 1, "id": "w", "op": "lease_acquire", "ts": 1, "lease": "m",
                            "holder": "h", "seen_epoch": -1, "seen_seq": 0})):
        r = apply(conn, raw)
        assert r["ok"] is False and r["reason"] == "invalid", r
    assert reads.applied_count(conn) == 7


def test_crm_queue_consume_is_read_and_clear() -> None:
    conn = db()
    e = acquire(conn, "manager", "n1")
    ok(conn, C.crm_command_enqueue("migrate vm:1 n2", ts=1.0))
    ok(conn, C.crm_command_enqueue("stop vm:2 30", ts=1.0))
    q = reads.crm_commands(conn)
    r = ok(conn, C.crm_command_consume(q[0][0], e, ts=2.0))
    assert r["commands"] == [[1, "migrate vm:1 n2"]]
    assert reads.crm_commands(conn) == [(2, "stop vm:2 30")]
    assert not apply(conn, C.crm_command_enqueue("format c:", ts=1.0))["ok"]


def test_environment_fault_raises_storefault_not_a_rejection() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    from harepl.store.schema import init

    init(conn)
    # simulate a full disk: SQLite reports SQLITE_FULL when it hits max_page_count
    conn.execute("PRAGMA max_page_count = " + str(conn.execute("PRAGMA page_count").fetchone()[0]))
    big = {"x": "y" * 100_000}
    try:
        apply(conn, C.group_set("g", {"nodes": {"n1": 1}, "comment": big["x"]}, ts=1.0))
    except StoreFault as exc:
        assert "full" in str(exc).lower()
    else:
        raise AssertionError("a full database must stop the member, not be recorded")


# -- property tests: determinism and idempotence ------------------------------------

NODES = ["n1", "n2", "n3"]
names = st.sampled_from(NODES)
sids = st.sampled_from(["vm:1", "vm:2", "ct:3", "fa:4"])


@st.composite
def any_command(draw: st.DrawFn) -> dict | str:
    kind = draw(st.integers(0, 15))
    ts = draw(st.floats(0, 1e9, allow_nan=False))
    ep = draw(st.integers(0, 4))
    lease = draw(st.sampled_from(["manager", "agent:n1", "agent:n2"]))
    if kind == 0:
        return C.lease_acquire(lease, draw(names), ep, draw(st.integers(0, 6)), ts=ts)
    if kind == 1:
        return C.lease_renew(lease, draw(names), ep, ts=ts)
    if kind == 2:
        return C.lease_release(lease, draw(names), ep, ts=ts)
    if kind == 3:
        return C.manager_status_set({"master_node": draw(names), "node_status": {n: "online" for n in NODES}},
                                    ep, ts=ts)
    if kind == 4:
        return C.lrm_status_set(draw(names), {"mode": "active", "state": "active", "results": {}}, ep, ts=ts)
    if kind == 5:
        return C.crm_command_enqueue(f"migrate {draw(sids)} {draw(names)}", ts=ts)
    if kind == 6:
        return C.crm_command_consume(draw(st.integers(0, 5)), ep, ts=ts)
    if kind == 7:
        cfg = {"node": draw(names), "state": draw(st.sampled_from(["started", "enabled", "stopped", "bad"]))}
        if draw(st.booleans()):
            cfg["group"] = draw(st.sampled_from(["g1", "g2"]))
        return C.resource_add(draw(sids), cfg, ts=ts)
    if kind == 8:
        return C.resource_set(draw(sids), {"max_restart": draw(st.integers(0, 3))}, ts=ts)
    if kind == 9:
        return C.resource_remove(draw(sids), ts=ts)
    if kind == 10:
        return C.group_set(draw(st.sampled_from(["g1", "g2"])), {"nodes": {draw(names): 2}}, ts=ts)
    if kind == 11:
        return C.group_remove(draw(st.sampled_from(["g1", "g2"])), ts=ts)
    if kind == 12:
        return C.rule_set("r1", {"type": "node-affinity", "resources": [draw(sids)], "nodes": {"n1": 1}}, ts=ts)
    if kind == 13:
        return C.node_add(draw(names), ts=ts)
    if kind == 14:
        return C.noop(ts=ts)
    return draw(st.sampled_from(["garbage", "{}", '{"v":1}']))


def _raw(cmd: dict | str) -> str:
    return cmd if isinstance(cmd, str) else C.encode(cmd)


@settings(max_examples=60, deadline=None)
@given(st.lists(any_command(), max_size=40), st.data())
def test_same_commands_give_byte_identical_databases(cmds: list, data: st.DataObject) -> None:
    a, b = db(), db()
    res_a = [apply(a, _raw(c)) for c in cmds]
    # b sees every command, some of them delivered twice (a retry after a timeout that
    # committed anyway); a command without a valid id cannot be deduplicated, so only
    # well-formed commands are redelivered
    res_b = []
    for c in cmds:
        res_b.append(apply(b, _raw(c)))
        if isinstance(c, dict) and data.draw(st.booleans()):
            again = apply(b, _raw(c))
            assert again == {**res_b[-1], "duplicate": True}
    assert res_a == res_b
    assert list(a.iterdump()) == list(b.iterdump())
    assert a.serialize() == b.serialize()


@settings(max_examples=40, deadline=None)
@given(st.lists(any_command(), max_size=40))
def test_replay_on_fresh_database_is_identical(cmds: list) -> None:
    a, b = db(), db()
    for c in cmds:
        apply(a, _raw(c))
    for c in cmds:
        apply(b, _raw(c))
    assert list(a.iterdump()) == list(b.iterdump())
    assert a.serialize() == b.serialize()


def test_lrm_status_without_epoch_only_before_the_lease_is_held() -> None:
    conn = db()
    ok(conn, C.lrm_status_set("n1", {"mode": "active", "state": "wait_for_agent_lock"}, None, ts=1.0))
    r = apply(conn, C.lrm_status_set("n1", {"mode": "active", "results": {"u": {}}}, None, ts=1.0))
    assert r["reason"] == "invalid"
    e = acquire(conn, "agent:n1", "n1")
    r = apply(conn, C.lrm_status_set("n1", {"mode": "active", "state": "active"}, None, ts=2.0))
    assert r["reason"] == "stale_epoch"
    ok(conn, C.lrm_status_set("n1", {"mode": "active", "state": "active"}, e, ts=2.0))
    assert reads.lrm_status(conn, "n1") == {"mode": "active", "state": "active"}


def test_unchanged_status_writes_leave_no_history_event() -> None:
    conn = db()
    e = acquire(conn, "manager", "n1")
    st = {"master_node": "n1", "node_status": {"n1": "online"}}
    r1 = ok(conn, C.manager_status_set(st, e, ts=1.0))
    r2 = ok(conn, C.manager_status_set(st, e, ts=2.0))
    ok(conn, C.manager_status_set({**st, "master_node": "n2"}, e, ts=3.0))
    assert "_unchanged" not in r1 and "_unchanged" not in r2
    assert [ev["op"] for ev in reads.events(conn)] == ["lease_acquire", "manager_status_set", "manager_status_set"]
