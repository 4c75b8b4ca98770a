"""ops.datacenter on a real SQLite state: dc_options_set merges, deletes, refuses in one
line, and checks its digest."""

from __future__ import annotations

from typing import Any

import pytest

from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.schema import connect
from tests.store.applying import ok, rejected


def test_dc_options_merge_delete_and_read_back() -> None:
    conn = connect()
    assert reads.datacenter(conn) == {}
    ok(conn, C.dc_options_set({"ha": {"shutdown_policy": "migrate"}}, ts=1.0))
    ok(conn, C.dc_options_set({"crs": {"ha": "static", "ha-rebalance-on-start": 1}}, ts=2.0))
    assert reads.datacenter(conn) == {"ha": {"shutdown_policy": "migrate"},
                                      "crs": {"ha": "static", "ha-rebalance-on-start": True}}
    ok(conn, C.dc_options_set({}, delete=["crs.ha-rebalance-on-start", "ha"], ts=3.0))
    assert reads.datacenter(conn) == {"crs": {"ha": "static"}}


@pytest.mark.parametrize("options, delete, message", [
    ({"ha": {"shutdown_policy": "sometimes"}}, None,
     "ha.shutdown_policy: expected one of conditional, freeze, failover, migrate (got 'sometimes')"),
    ({"crs": {"ha": "clairvoyant"}}, None, "crs.ha: expected one of basic, static, dynamic (got 'clairvoyant')"),
    ({"crs": {"rebalance": 1}}, None, "unknown datacenter option 'crs.rebalance'"),
    ({"cluster": {"x": 1}}, None, "unknown datacenter section 'cluster'"),
    ({"crs": {"ha-rebalance-on-start": "maybe"}}, None, "crs.ha-rebalance-on-start: expected a boolean"),
    ({}, ["crs.nope"], "unknown datacenter option 'crs.nope'"),
    ({}, None, "nothing to change"),
    ({"crs": {"ha": "static"}}, ["crs"], "cannot set and delete 'crs' at once"),
])
def test_bad_dc_options_are_one_line_rejections(options: dict[str, Any], delete: list[str] | None,
                                                message: str) -> None:
    conn = connect()
    ok(conn, C.dc_options_set({"ha": {"shutdown_policy": "freeze"}}, ts=1.0))
    error = rejected(conn, C.dc_options_set(options, delete=delete, ts=2.0), "invalid")
    assert message in error
    assert reads.datacenter(conn) == {"ha": {"shutdown_policy": "freeze"}}


def test_dc_options_digest() -> None:
    conn = connect()
    seen = reads.digest(reads.datacenter(conn))
    ok(conn, C.dc_options_set({"crs": {"ha": "static"}}, digest=seen, ts=1.0))
    # a second writer that read before the first write is refused
    error = rejected(conn, C.dc_options_set({"crs": {"ha": "basic"}}, digest=seen, ts=2.0), "conflict")
    assert error == C.DIGEST_MISMATCH
    ok(conn, C.dc_options_set({"crs": {"ha": "basic"}}, digest=reads.digest(reads.datacenter(conn)), ts=3.0))


def test_version_2_keeps_its_meaning_version_3_adds_proxmox_crs_settings() -> None:
    """A version-2 dc_options_set means what it meant (ha=dynamic refused); the same
    settings are a version-3 command now and applied (issue 9)."""
    from harepl.store.ops import datacenter

    conn = connect()
    old = datacenter.DC_OPTIONS_SET.make(options={"crs": {"ha": "dynamic"}}, ts=1.0)
    assert old["v"] == 2
    assert "crs.ha: expected one of basic, static (got 'dynamic')" in rejected(conn, old, "invalid")
    new = C.dc_options_set({"crs": {"ha": "dynamic", "ha-auto-rebalance-margin": 0.2,
                                    "ha-auto-rebalance-threshold": 0.5, "ha-auto-rebalance-method": "bruteforce"}},
                           ts=2.0)
    assert new["v"] == 3
    ok(conn, new)
    assert reads.datacenter(conn) == {"crs": {"ha": "dynamic", "ha-auto-rebalance-margin": 0.2,
                                              "ha-auto-rebalance-threshold": 0.5,
                                              "ha-auto-rebalance-method": "bruteforce"}}
    ok(conn, C.dc_options_set({}, delete=["crs.ha-auto-rebalance-margin"], ts=3.0))
