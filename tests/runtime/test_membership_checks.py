"""Membership pieces that need no cluster: request checks of /cluster/members over the
single-node API (real server, real SQLite store; it has no Raft, so a valid change is
answered 501), and the config-drift line a daemon logs. The real changes run against
real daemons in tests/cluster/test_membership.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harepl.runtime.api.local_backend import LocalApi
from harepl.runtime.apiprobe import request_json
from harepl.runtime.config import Member
from harepl.runtime.membership import MembershipError, check_addr, check_name, config_drift


@pytest.fixture
def api() -> Iterator[LocalApi]:
    path = tempfile.mkdtemp(prefix="hmem-", dir="/tmp")
    with LocalApi(path) as running:
        yield running
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(("body", "text"), [
    ([1], "body must be a JSON object"),
    ({"node": "n4"}, "missing field 'addr'"),
    ({"node": "n4", "addr": "127.0.0.1:1", "x": 1}, "unknown field 'x'"),
])
def test_bad_bodies_are_400_with_one_line(api: LocalApi, body: object, text: str) -> None:
    status, data = request_json(Path(api.socket_path), "POST", "/cluster/members", body)
    assert status == 400 and text in data["error"] and "\n" not in data["error"]


def test_without_a_raft_store_the_api_says_so(api: LocalApi) -> None:
    sock = Path(api.socket_path)
    for method, path, body in [("GET", "/cluster/members", None),
                               ("POST", "/cluster/members", {"node": "n4", "addr": "127.0.0.1:7"}),
                               ("DELETE", "/cluster/members/node2", None)]:
        status, data = request_json(sock, method, path, body)
        assert status == 501 and "node daemon" in data["error"], (method, data)


@pytest.mark.parametrize("bad", ["", "a b", "n/1", 7, None])
def test_node_names_are_checked(bad: object) -> None:
    with pytest.raises(MembershipError) as e:
        check_name(bad)
    assert e.value.status == 400


@pytest.mark.parametrize(("addr", "ok"), [("127.0.0.1:7100", True), ("[::1]:7100", True), ("host:1", False),
                                          ("127.0.0.1", False), ("127.0.0.1:0", False), (5, False)])
def test_raft_addresses_are_checked(addr: object, ok: bool) -> None:
    if ok:
        assert check_addr(addr).endswith(":7100")
    else:
        with pytest.raises(MembershipError):
            check_addr(addr)


def test_config_drift_names_what_to_change() -> None:
    cfg = (Member("n1", "10.0.0.1", 7100), Member("n2", "10.0.0.2", 7100), Member("n3", "10.0.0.3", 7100))
    assert config_drift(cfg, {}) is None  # no change made yet: the config is the list
    same = {m.name: {"addr": m.raft_addr} for m in cfg}
    assert config_drift(cfg, same) is None
    grown = dict(same, n4={"addr": "10.0.0.4:7100"})
    del grown["n3"]
    line = config_drift(cfg, grown)
    assert line is not None and "add n4 (10.0.0.4:7100)" in line and "remove n3" in line and "\n" not in line
