"""ops.nodes on a real SQLite state: a node's capacity (node_stats_set)."""

from __future__ import annotations

from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.schema import connect
from tests.store.applying import ok, rejected


def test_node_stats_published_and_unchanged_republish_is_quiet() -> None:
    conn = connect()
    ok(conn, C.node_stats_set("n1", 4, 8 << 30, ts=1.0))
    ok(conn, C.node_stats_set("n2", 2, 4 << 30, ts=1.0))
    assert reads.node_stats(conn) == {"n1": {"maxcpu": 4.0, "maxmem": float(8 << 30)},
                                      "n2": {"maxcpu": 2.0, "maxmem": float(4 << 30)}}
    n_events = len(reads.events(conn))
    ok(conn, C.node_stats_set("n1", 4, 8 << 30, ts=2.0))
    assert len(reads.events(conn)) == n_events
    rejected(conn, C.node_stats_set("n1", 0, 8 << 30, ts=3.0), "invalid")
