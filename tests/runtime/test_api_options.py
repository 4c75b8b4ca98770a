"""The API over the real store: datacenter settings (/cluster/options), digests, and
concurrent edits of one object that must not lose each other's changes."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from harepl.runtime.api.backend import ClusterState, WriteResult
from harepl.runtime.api.client import ApiClient, ApiClientError
from harepl.runtime.api.local_backend import LocalApi, LocalStoreBackend
from harepl.runtime.api.server import serve_api
from harepl.store import reads
from harepl.store import vocabulary as C

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def api() -> Iterator[LocalApi]:
    path = tempfile.mkdtemp(prefix="hopt-", dir="/tmp")
    with LocalApi(path) as running:
        yield running
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def client(api: LocalApi) -> ApiClient:
    return ApiClient(api.socket_path)


def expect_error(call: Any, status: int, fragment: str) -> None:
    with pytest.raises(ApiClientError) as info:
        call()
    assert info.value.status == status, info.value.message
    assert fragment in info.value.message, info.value.message
    assert "\n" not in info.value.message


def applied(api: LocalApi) -> int:
    return reads.applied_count(api.backend.conn)


# ---------------------------------------------------------------- /cluster/options

def test_options_roundtrip_like_pvesh(api: LocalApi, client: ApiClient) -> None:
    empty = client.get("/cluster/options")
    assert empty == {"digest": reads.digest({})}
    client.put("/cluster/options", {"ha": "shutdown_policy=migrate", "crs": "ha=static,ha-rebalance-on-start=1"})
    got = client.get("/cluster/options")
    assert {k: v for k, v in got.items() if k != "digest"} == {
        "ha": {"shutdown_policy": "migrate"}, "crs": {"ha": "static", "ha-rebalance-on-start": True}}
    # the object form, merged key by key
    client.put("/cluster/options", {"crs": {"ha-rebalance-on-start": False}})
    assert api.backend.read_state().datacenter["crs"] == {"ha": "static", "ha-rebalance-on-start": False}
    client.put("/cluster/options", {"delete": "crs.ha-rebalance-on-start,ha"})
    assert api.backend.read_state().datacenter == {"crs": {"ha": "static"}}
    # what the daemon's manager view shows (`ha-manager status --verbose`)
    assert client.get("/status/manager_status")["datacenter"] == {"crs": {"ha": "static"}}


@pytest.mark.parametrize("body, fragment", [
    ({"ha": "shutdown_policy=sometimes"}, "ha.shutdown_policy: expected one of conditional, freeze, failover, migrate"),
    ({"crs": "ha=clairvoyant"}, "crs.ha: expected one of basic, static, dynamic"),
    ({"crs": "mode=static"}, "unknown datacenter option 'crs.mode'"),
    ({"crs": "ha-rebalance-on-start=perhaps"}, "crs.ha-rebalance-on-start must be a boolean"),
    ({"crs": "ha"}, "expected KEY=VALUE items"),
    ({"crs": "ha=static,ha=basic"}, "'ha' given twice"),
    ({"migration": "type=secure"}, "unknown datacenter options property 'migration'"),
    ({"delete": ["crs.nope"]}, "cannot delete unknown datacenter option 'crs.nope'"),
    ({"crs": "ha=static", "delete": "crs"}, "cannot set and delete 'crs' at once"),
    ({}, "nothing to change"),
    ({"ha": "shutdown_policy=freeze", "digest": "xyz"}, "digest must be the 40 hex digits"),
])
def test_bad_options_are_one_line_400_and_write_nothing(api: LocalApi, client: ApiClient,
                                                        body: dict[str, Any], fragment: str) -> None:
    before = applied(api)
    expect_error(lambda: client.put("/cluster/options", body), 400, fragment)
    assert applied(api) == before


def test_options_digest(api: LocalApi, client: ApiClient) -> None:
    seen = client.get("/cluster/options")["digest"]
    client.put("/cluster/options", {"crs": "ha=static", "digest": seen})
    expect_error(lambda: client.put("/cluster/options", {"crs": "ha=basic", "digest": seen}), 409,
                 C.DIGEST_MISMATCH)
    assert api.backend.read_state().datacenter == {"crs": {"ha": "static"}}


def test_nodes_show_published_capacity(api: LocalApi, client: ApiClient) -> None:
    api.backend.apply_raw(C.node_stats_set("node2", 4, 8 << 30))
    nodes = {n["node"]: n for n in client.get("/nodes")}
    assert nodes["node2"]["maxcpu"] == 4 and nodes["node2"]["maxmem"] == 8 << 30
    assert "maxcpu" not in nodes["node1"]


# ---------------------------------------------------------------- digests on edits

def test_stale_digest_refused_for_group_rule_resource(api: LocalApi, client: ApiClient) -> None:
    client.post("/groups", {"group": "web", "nodes": "node1:2,node2"})
    client.post("/resources", {"sid": "fa:1"})
    client.post("/rules", {"rule": "pin", "type": "node-affinity", "resources": "fa:1", "nodes": "node1"})
    for path in ("/groups/web", "/rules/pin", "/resources/fa:1"):
        seen = client.get(path)["digest"]
        client.put(path, {"comment": "first", "digest": seen})
        before = applied(api)
        expect_error(lambda: client.put(path, {"comment": "second", "digest": seen}), 409,  # noqa: B023
                     "config changed meanwhile (digest mismatch) - reload and retry")
        assert applied(api) == before
        assert client.get(path)["comment"] == "first"
        client.put(path, {"comment": "third", "digest": client.get(path)["digest"]})
        assert client.get(path)["comment"] == "third"


class _ReadBothThenWrite:
    """A real LocalStoreBackend where the first `n` writers all finish validating on
    what they read before any of them submits: the interleaving of two operators who
    edit the same object at the same moment, made certain instead of lucky."""

    def __init__(self, inner: LocalStoreBackend, n: int) -> None:
        self.inner = inner
        self.barrier = threading.Barrier(n, timeout=20)

    def read_state(self, fresh: bool = False) -> ClusterState:
        return self.inner.read_state(fresh)

    def read_events(self, after_seq: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self.inner.read_events(after_seq, limit)

    def submit(self, command: dict[str, Any]) -> WriteResult:
        self.barrier.wait()
        return self.inner.submit(command)


def _concurrent(api: LocalApi, requests: list[tuple[str, dict[str, Any]]]) -> list[BaseException | None]:
    socket_path = os.path.join(os.path.dirname(api.socket_path), "racing.sock")
    handle = serve_api(_ReadBothThenWrite(api.backend, len(requests)), unix_path=socket_path)
    errors: list[BaseException | None] = [None] * len(requests)

    def put(i: int, path: str, body: dict[str, Any]) -> None:
        try:
            ApiClient(socket_path).put(path, body)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors[i] = exc

    try:
        threads = [threading.Thread(target=put, args=(i, p, b)) for i, (p, b) in enumerate(requests)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        handle.close()
    return errors


def test_concurrent_edits_of_different_fields_all_survive(api: LocalApi, client: ApiClient) -> None:
    client.post("/groups", {"group": "web", "nodes": "node1:2,node2"})
    client.post("/resources", {"sid": "exec:web", "params": {"command": "sleep 100"}})
    client.post("/rules", {"rule": "pin", "type": "node-affinity", "resources": "exec:web", "nodes": "node1"})
    errors = _concurrent(api, [
        ("/groups/web", {"comment": "front end"}),
        ("/groups/web", {"nofailback": True}),
        ("/groups/web", {"nodes": "node1,node3:5"}),
    ])
    assert errors == [None, None, None]
    assert api.backend.read_state().groups["web"] == {
        "nodes": {"node1": 0, "node3": 5}, "restricted": False, "nofailback": True, "comment": "front end"}
    errors = _concurrent(api, [
        ("/resources/exec:web", {"max_restart": 4}),
        ("/resources/exec:web", {"params": {"stop_timeout_s": "3"}}),
        ("/rules/pin", {"strict": 1}),
        ("/rules/pin", {"comment": "keep on node1"}),
    ])
    assert errors == [None, None, None, None]
    state = api.backend.read_state()
    assert state.resources["exec:web"]["max_restart"] == 4
    assert state.resources["exec:web"]["params"] == {"command": "sleep 100", "stop_timeout_s": "3"}
    assert state.rules["pin"]["strict"] is True and state.rules["pin"]["comment"] == "keep on node1"


def test_concurrent_edits_with_the_same_digest_one_wins(api: LocalApi, client: ApiClient) -> None:
    client.post("/groups", {"group": "web", "nodes": "node1:2,node2"})
    seen = client.get("/groups/web")["digest"]
    errors = _concurrent(api, [
        ("/groups/web", {"comment": "mine", "digest": seen}),
        ("/groups/web", {"restricted": True, "digest": seen}),
    ])
    refused = [e for e in errors if e is not None]
    assert len(refused) == 1
    assert isinstance(refused[0], ApiClientError) and refused[0].status == 409
    assert refused[0].message == C.DIGEST_MISMATCH
    group = api.backend.read_state().groups["web"]
    assert (group.get("comment") == "mine") != group["restricted"]
