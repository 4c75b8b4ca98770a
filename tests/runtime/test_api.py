"""The local API over a real Unix socket, on the real store (SQLite file + apply)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harepl.runtime.api import serve_api
from harepl.runtime.api.client import ApiClient, ApiClientError
from harepl.runtime.api.local_backend import LocalApi
from harepl.store import reads


@pytest.fixture
def short_dir() -> Iterator[str]:
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer
    path = tempfile.mkdtemp(prefix="hapi-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def api(short_dir: str) -> Iterator[LocalApi]:
    with LocalApi(short_dir) as running:
        yield running


@pytest.fixture
def client(api: LocalApi) -> ApiClient:
    return ApiClient(api.socket_path, timeout_s=10)


def checked_digest(item: dict[str, Any], key: str) -> dict[str, Any]:
    """The object without its `digest`, after checking the digest is the store's of it."""
    rest = {k: v for k, v in item.items() if k not in ("digest", key)}
    assert item["digest"] == reads.digest(rest)
    return {k: v for k, v in item.items() if k != "digest"}


def applied(api: LocalApi) -> int:
    return reads.applied_count(api.backend.conn)


def raw_request(path: str, data: bytes) -> tuple[int, dict[str, Any]]:
    """Send raw bytes on the socket and parse the HTTP answer (status, JSON body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)


def expect_error(call: Any, status: int, fragment: str) -> str:
    with pytest.raises(ApiClientError) as info:
        call()
    assert info.value.status == status, info.value.message
    assert fragment in info.value.message
    assert "\n" not in info.value.message and "Traceback" not in info.value.message
    return info.value.message


# ---------------------------------------------------------------- socket

def test_socket_is_private_and_removed_on_close(short_dir: str) -> None:
    running = LocalApi(short_dir)
    mode = os.stat(running.socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert not [n for n in os.listdir(short_dir) if n.startswith(".harepl-api-")]
    running.close()
    assert not os.path.exists(running.socket_path)


def test_stale_socket_is_replaced_but_live_one_is_not_stolen(short_dir: str) -> None:
    path = os.path.join(short_dir, "api.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)       # a socket file nobody listens on: a dead daemon's leftover
    stale.close()
    with LocalApi(short_dir) as running:
        assert ApiClient(path).get("/status")["quorate"] is True
        with pytest.raises(OSError, match="already serving"):
            serve_api(running.backend, unix_path=path)
        assert ApiClient(path).get("/status")["node"] == "node1"


def test_non_socket_file_is_never_replaced(short_dir: str, api: LocalApi) -> None:
    path = os.path.join(short_dir, "plain")
    with open(path, "w") as f:
        f.write("keep me")
    with pytest.raises(OSError, match="not a socket"):
        serve_api(api.backend, unix_path=path)
    with open(path) as f:
        assert f.read() == "keep me"


def test_serve_api_needs_an_address_and_tcp_needs_a_token(api: LocalApi) -> None:
    with pytest.raises(ValueError, match="unix_path, tcp"):
        serve_api(api.backend)
    with pytest.raises(ValueError, match="token"):
        serve_api(api.backend, tcp=("127.0.0.1", 0))


def test_tcp_requires_the_bearer_token(short_dir: str) -> None:
    with LocalApi(short_dir, tcp=("127.0.0.1", 0), token="s3cret-token") as running:
        assert running.handle.tcp_address is not None
        host, port = running.handle.tcp_address
        url = f"http://{host}:{port}"
        assert ApiClient(url, token="s3cret-token").get("/status")["quorate"] is True
        expect_error(lambda: ApiClient(url, token="s3cret-tokeX").get("/status"), 401, "token")
        expect_error(lambda: ApiClient(url, token="s3cret-token-longer").get("/resources"), 401, "token")
        # no Authorization header at all
        client = ApiClient(url, token="x")
        client.token = None
        expect_error(lambda: client.get("/status"), 401, "token")
        # the Unix socket of the same daemon needs no token
        assert ApiClient(running.socket_path).get("/status")["node"] == "node1"


# ---------------------------------------------------------------- resources

def test_resource_lifecycle(api: LocalApi, client: ApiClient) -> None:
    client.post("/resources", {"sid": "exec:web", "params": {"command": "sleep 1000"}, "node": "node2",
                               "max_restart": "2", "state": "enabled", "comment": "the web"})
    stored = api.backend.read_state().resources["exec:web"]
    assert stored == {"type": "exec", "state": "started", "node": "node2", "max_restart": 2,
                      "max_relocate": 1, "failback": True, "comment": "the web",
                      "params": {"command": "sleep 1000"}}
    assert checked_digest(client.get("/resources/exec:web"), "sid") == {"sid": "exec:web", **stored}
    assert client.get("/resources/exec%3Aweb")["sid"] == "exec:web"

    client.put("/resources/exec:web", {"state": "disabled", "params": {"extra": "1"}, "delete": ["comment"]})
    stored = api.backend.read_state().resources["exec:web"]
    assert stored["state"] == "disabled" and "comment" not in stored
    assert stored["params"] == {"command": "sleep 1000", "extra": "1"}

    client.put("/resources/exec:web", {"delete": "params.extra,max_restart"})
    stored = api.backend.read_state().resources["exec:web"]
    assert stored["params"] == {"command": "sleep 1000"} and stored["max_restart"] == 1

    before = applied(api)
    expect_error(lambda: client.put("/resources/exec:web", {"delete": ["params.command"]}), 400,
                 "needs a non-empty parameter 'command'")
    assert applied(api) == before

    client.delete("/resources/exec:web")
    assert api.backend.read_state().resources == {}


def test_add_defaults_and_bare_vmid(api: LocalApi, client: ApiClient) -> None:
    client.post("/resources", {"sid": "fa:100"})
    client.post("/resources", {"sid": "100", "params": {"backend": "exec", "command": "sleep 100"}})
    client.post("/resources", {"sid": "ocf:dummy", "params": {"agent": "heartbeat/Dummy", "fake": "x"}})
    listed = client.get("/resources")
    assert [r["sid"] for r in listed] == ["fa:100", "ocf:dummy", "vm:100"]
    assert checked_digest(listed[0], "sid") == {"sid": "fa:100", "type": "fa", "state": "started", "node": "node1",
                         "max_restart": 1, "max_relocate": 1, "failback": True, "params": {}}
    assert listed[2]["type"] == "vm"
    assert [r["sid"] for r in client.get("/resources", type="ocf")] == ["ocf:dummy"]


@pytest.mark.parametrize("body, status, fragment", [
    ({"sid": "bogus:x"}, 400, "unknown service type 'bogus'"),
    ({"sid": "exec"}, 400, "expected TYPE:NAME"),
    ({"sid": "vm:abc"}, 400, "numeric id"),
    ({"sid": "exec:a b", "params": {"command": "x"}}, 400, "name may use"),
    # the agent factory's own reasons: a config no node could run is refused at once
    ({"sid": "exec:web"}, 400, "exec:web: exec service needs a non-empty parameter 'command'"),
    ({"sid": "ocf:d", "params": {"agent": "Dummy"}}, 400, "must be 'provider/type'"),
    ({"sid": "ocf:d", "params": {"agent": "heartbeat/NoSuchAgent"}}, 400, "not found"),
    ({"sid": "vm:100"}, 400, "needs parameter(s) config"),
    ({"sid": "fa:1", "state": "running"}, 400, "state must be one of"),
    ({"sid": "fa:1", "max_restart": -1}, 400, "max_restart must be between 0"),
    ({"sid": "fa:1", "max_relocate": "many"}, 400, "max_relocate must be an integer"),
    ({"sid": "fa:1", "failback": "perhaps"}, 400, "failback must be a boolean"),
    ({"sid": "fa:1", "node": "node9"}, 400, "no such cluster node 'node9'"),
    ({"sid": "fa:1", "group": "nogroup"}, 400, "HA group 'nogroup' does not exist"),
    ({"sid": "fa:1", "colour": "red"}, 400, "unknown resource property 'colour'"),
    ({"sid": "fa:1", "comment": "two\nlines"}, 400, "one line"),
    ({"sid": "fa:1", "params": {"bad key": "x"}}, 400, "invalid parameter name"),
    ({"sid": "fa:1", "type": "ct"}, 400, "does not match"),
    ([1, 2], 400, "must be a JSON object"),
])
def test_bad_resource_add_is_refused_without_writing(api: LocalApi, client: ApiClient,
                                                     body: Any, status: int, fragment: str) -> None:
    before = applied(api)
    expect_error(lambda: client.post("/resources", body), status, fragment)
    assert applied(api) == before
    assert api.backend.read_state().resources == {}


def test_conflicts_and_unknown_objects(api: LocalApi, client: ApiClient) -> None:
    client.post("/resources", {"sid": "fa:100"})
    before = applied(api)
    expect_error(lambda: client.post("/resources", {"sid": "fa:100"}), 409, "'fa:100' already defined")
    expect_error(lambda: client.get("/resources/fa:101"), 404, "no such resource 'fa:101'")
    expect_error(lambda: client.put("/resources/fa:101", {"state": "stopped"}), 404, "no such resource")
    expect_error(lambda: client.delete("/resources/fa:101"), 404, "no such resource")
    expect_error(lambda: client.post("/resources/fa:101/migrate", {"node": "node2"}), 404, "no such resource")
    expect_error(lambda: client.put("/resources/fa:100", {}), 400, "nothing to change")
    expect_error(lambda: client.put("/resources/fa:100", {"comment": "x", "delete": ["comment"]}), 400,
                 "cannot set and delete 'comment'")
    expect_error(lambda: client.put("/resources/fa:100", {"delete": ["type"]}), 400, "cannot delete 'type'")
    assert applied(api) == before


def test_store_rejection_is_a_409_with_applys_message(api: LocalApi) -> None:
    # the API's own checks normally catch this first; the store stays the authority
    api.backend.submit({"op": "resource_add", "sid": "fa:5", "config": {"type": "fa", "node": "node1"}})
    result = api.backend.submit({"op": "resource_add", "sid": "fa:5", "config": {"type": "fa", "node": "node1"}})
    assert not result.ok and result.error == "service 'fa:5' already exists"


# ---------------------------------------------------------------- crm commands

def test_crm_commands_are_queued(api: LocalApi, client: ApiClient) -> None:
    client.post("/resources", {"sid": "fa:100"})
    client.post("/resources/fa:100/migrate", {"node": "node2"})
    client.post("/resources/fa:100/relocate", {"node": "node3"})
    client.post("/resources/fa:100/stop", {"timeout": 30})
    client.post("/nodes/node2/maintenance", {"enable": True})
    client.post("/nodes/node2/maintenance", {"enable": False})
    assert [cmd for _seq, cmd in reads.crm_commands(api.backend.conn)] == [
        "migrate fa:100 node2", "relocate fa:100 node3", "stop fa:100 30",
        "enable-node-maintenance node2", "disable-node-maintenance node2"]


def test_bad_crm_commands(api: LocalApi, client: ApiClient) -> None:
    client.post("/resources", {"sid": "fa:100"})
    before = applied(api)
    expect_error(lambda: client.post("/resources/fa:100/migrate", {}), 400, "needs a target node")
    expect_error(lambda: client.post("/resources/fa:100/migrate", {"node": "nodeX"}), 400, "no such cluster node")
    expect_error(lambda: client.post("/resources/fa:100/stop", {"timeout": -5}), 400, "timeout must be between")
    expect_error(lambda: client.post("/resources/fa:100/stop", {}), 400, "needs a timeout")
    expect_error(lambda: client.post("/nodes/node7/maintenance", {"enable": True}), 400, "no such cluster node")
    expect_error(lambda: client.post("/nodes/node2/maintenance", {"enable": "maybe"}), 400, "boolean")
    assert applied(api) == before


def test_service_in_error_state_must_be_disabled_first(api: LocalApi, client: ApiClient) -> None:
    client.post("/resources", {"sid": "fa:100"})
    api.backend.write_manager_status("node1", {
        "master_node": "node1", "node_status": {"node1": "online"},
        "service_status": {"fa:100": {"state": "error", "node": "node1", "uid": "u1"}}})
    expect_error(lambda: client.post("/resources/fa:100/migrate", {"node": "node2"}), 409,
                 "service 'fa:100' in error state, must be disabled and fixed first")
    expect_error(lambda: client.put("/resources/fa:100", {"state": "started"}), 409, "error state")
    client.put("/resources/fa:100", {"state": "disabled"})
    assert api.backend.read_state().resources["fa:100"]["state"] == "disabled"


# ---------------------------------------------------------------- groups and rules

def test_groups_crud(api: LocalApi, client: ApiClient) -> None:
    client.post("/groups", {"group": "web", "nodes": "node1:2,node2", "restricted": 1})
    assert checked_digest(client.get("/groups/web"), "group") == {"group": "web", "nodes": {"node1": 2, "node2": 0},
                                         "restricted": True, "nofailback": False}
    client.put("/groups/web", {"nofailback": True, "comment": "front"})
    client.put("/groups/web", {"delete": ["restricted"]})
    assert api.backend.read_state().groups["web"] == {"nodes": {"node1": 2, "node2": 0}, "restricted": False,
                                                      "nofailback": True, "comment": "front"}
    client.post("/resources", {"sid": "fa:100", "group": "web"})
    expect_error(lambda: client.delete("/groups/web"), 409, "used by resource(s) fa:100")
    expect_error(lambda: client.post("/groups", {"group": "web", "nodes": "node1"}), 409, "already defined")
    client.put("/resources/fa:100", {"delete": "group"})
    client.delete("/groups/web")
    assert client.get("/groups") == []


@pytest.mark.parametrize("body, fragment", [
    ({"group": "g"}, "needs nodes"),
    ({"group": "g", "nodes": "node1:x"}, "priority of node 'node1' must be an integer"),
    ({"group": "g", "nodes": "node1,nodeZ"}, "no such cluster node 'nodeZ'"),
    ({"group": "g", "nodes": ""}, "at least one node"),
    ({"group": "1g", "nodes": "node1"}, "invalid group name"),
    ({"group": "g", "nodes": "node1", "restricted": "sometimes"}, "restricted must be a boolean"),
])
def test_bad_groups(api: LocalApi, client: ApiClient, body: dict[str, Any], fragment: str) -> None:
    before = applied(api)
    expect_error(lambda: client.post("/groups", body), 400, fragment)
    assert applied(api) == before


def test_rules_crud(api: LocalApi, client: ApiClient) -> None:
    client.post("/resources", {"sid": "fa:100"})
    client.post("/resources", {"sid": "fa:101"})
    client.post("/rules", {"rule": "keep-apart", "type": "resource-affinity",
                           "resources": "fa:100,fa:101", "affinity": "negative"})
    client.post("/rules", {"rule": "pin", "type": "node-affinity", "resources": ["fa:100"],
                           "nodes": {"node1": 1}, "strict": True})
    assert [r["rule"] for r in client.get("/rules")] == ["keep-apart", "pin"]
    assert [r["rule"] for r in client.get("/rules", type="node-affinity")] == ["pin"]
    assert [r["rule"] for r in client.get("/rules", resource="fa:101")] == ["keep-apart"]
    client.put("/rules/pin", {"disable": 1, "nodes": "node2:3"})
    assert checked_digest(client.get("/rules/pin"), "rule") == {"rule": "pin", "type": "node-affinity", "resources": ["fa:100"],
                                        "nodes": {"node2": 3}, "strict": True, "disable": True}
    expect_error(lambda: client.put("/rules/pin", {"type": "resource-affinity"}), 400, "type cannot change")
    expect_error(lambda: client.post("/rules", {"rule": "x", "type": "node-affinity", "resources": "fa:999",
                                                "nodes": "node1"}), 400, "unmanaged resource(s) fa:999")
    expect_error(lambda: client.post("/rules", {"rule": "y", "type": "resource-affinity",
                                                "resources": "fa:100"}), 400, "affinity positive or negative")
    expect_error(lambda: client.post("/rules", {"rule": "z", "type": "colocation"}), 400, "rule type must be")
    client.delete("/rules/pin")
    expect_error(lambda: client.get("/rules/pin"), 404, "HA rule 'pin' does not exist")


# ---------------------------------------------------------------- status and events

def test_status_views(api: LocalApi, client: ApiClient) -> None:
    now = time.time()
    client.post("/resources", {"sid": "exec:web", "params": {"command": "sleep 1"}, "node": "node2"})
    client.post("/resources", {"sid": "fa:100", "state": "stopped"})
    api.backend.write_manager_status("node1", {
        "master_node": "node1", "timestamp": now,
        "node_status": {"node1": "online", "node2": "online", "node3": "unknown"},
        "service_status": {"exec:web": {"state": "started", "node": "node2", "uid": "a", "running": 1}}})
    api.backend.write_lrm_status("node2", {"mode": "active", "state": "active", "results": {}, "timestamp": now})
    api.backend.write_lrm_status("node1", {"mode": "maintenance", "state": "maintenance", "results": {},
                                           "timestamp": now})
    stamp = time.ctime(now)
    assert [f"{e['type']} {e['status']}" for e in client.get("/status/current")] == [
        "quorum OK",
        f"master node1 (active, {stamp})",
        f"lrm node1 (maintenance mode, {stamp})",
        f"lrm node2 (active, {stamp})",
        # core's status_view (Proxmox prints "(unable to read lrm status)" here)
        "lrm node3 (unknown, unknown)",
        "service exec:web (node2, started)",
        "service fa:100 (node1, queued)",
    ]
    full = client.get("/status/manager_status")
    assert full["quorum"] == {"node": "node1", "quorate": True}
    assert full["manager_status"]["master_node"] == "node1"
    assert set(full["lrm_status"]) == {"node1", "node2"}
    assert client.get("/status") == {"node": "node1", "quorate": True, "master_node": "node1"}
    nodes = {n["node"]: n for n in client.get("/nodes")}
    assert nodes["node1"]["master"] is True and nodes["node3"]["status"] == "unknown"
    assert nodes["node2"]["lrm_state"] == "active"


def test_events_history(api: LocalApi, client: ApiClient) -> None:
    client.post("/resources", {"sid": "fa:100"})
    client.post("/resources/fa:100/migrate", {"node": "node2"})
    events = client.get("/events")
    assert [e["op"] for e in events][-2:] == ["resource_add", "crm_command_enqueue"]
    last_seq = events[-1]["seq"]
    assert client.get("/events", after=last_seq) == []
    assert [e["seq"] for e in client.get("/events", after=last_seq - 2, limit=1)] == [last_seq - 1]
    expect_error(lambda: client.get("/events", limit=0), 400, "limit")
    expect_error(lambda: client.get("/events", colour="red"), 400, "unknown query parameter 'colour'")


# ---------------------------------------------------------------- protocol garbage

def test_malformed_requests_get_one_json_line(api: LocalApi, client: ApiClient) -> None:
    before = applied(api)
    body = b"{not json"
    status, data = raw_request(api.socket_path, b"POST /resources HTTP/1.0\r\nContent-Length: "
                               + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert status == 400 and data["error"].startswith("invalid JSON body")
    status, data = raw_request(api.socket_path, b"\x00\xffgarbage\r\n\r\n")
    assert status == 400 and "error" in data
    status, data = raw_request(api.socket_path, b"POST /resources HTTP/1.0\r\nContent-Length: 99999999\r\n\r\n")
    assert status == 413 and "too large" in data["error"]
    status, data = raw_request(api.socket_path, b"POST /resources HTTP/1.0\r\nContent-Length: -1\r\n\r\n")
    assert status == 400
    expect_error(lambda: client.get("/nowhere"), 404, "no such API path '/nowhere'")
    expect_error(lambda: client.request("PATCH", "/resources"), 405, "not allowed")
    expect_error(lambda: client.delete("/resources"), 405, "allowed: GET, POST")
    assert applied(api) == before
    assert client.get("/status")["quorate"] is True   # still serving


def test_no_quorum_refuses_writes_with_503(api: LocalApi, client: ApiClient) -> None:
    backend = api.backend
    original = backend.read_state

    def minority(fresh: bool = False):  # type: ignore[no-untyped-def]
        # the one-node store is always quorate: present it as a minority partition
        from dataclasses import replace
        return replace(original(fresh), quorate=False)

    backend.read_state = minority  # type: ignore[method-assign]
    before = applied(api)
    expect_error(lambda: client.post("/resources", {"sid": "fa:100"}), 503, "no quorum on node 'node1'")
    assert applied(api) == before
    assert client.get("/status/current")[0]["status"] == "No quorum on node 'node1'!"


def test_status_marks_a_silent_lrm(api: LocalApi, client: ApiClient) -> None:
    now = time.time()
    api.backend.write_manager_status("node1", {"master_node": "node1", "timestamp": now,
                                               "node_status": {"node1": "online", "node2": "online"},
                                               "service_status": {}})
    old = now - 100   # display only: a wall-clock age shown to the operator
    api.backend.write_lrm_status("node2", {"mode": "active", "state": "active", "results": {}, "timestamp": old})
    lines = [f"{e['type']} {e['status']}" for e in client.get("/status/current")]
    assert f"lrm node2 (old timestamp - dead?, {time.ctime(old)})" in lines


def _as_nobody(action: Any) -> int:
    """Run `action()` in a forked child as uid/gid 65534; return its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 99
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = action()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
def test_other_users_are_refused(api: LocalApi) -> None:
    os.chmod(os.path.dirname(api.socket_path), 0o755)   # so only the socket's own mode protects it

    def connect() -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(api.socket_path)
            except PermissionError:
                return 0
            return 1

    assert _as_nobody(connect) == 0, "the 0600 socket let another user connect"

    # defence in depth: even with the mode opened up, the peer's uid is checked
    os.chmod(api.socket_path, 0o666)

    def request() -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(api.socket_path)
            try:
                sock.sendall(b"GET /status HTTP/1.0\r\n\r\n")
                answer = sock.recv(100)
            except (BrokenPipeError, ConnectionResetError):
                return 0
            return 0 if answer == b"" else 2

    assert _as_nobody(request) == 0, "a peer with another uid got an answer"


def test_concurrent_clients(api: LocalApi) -> None:
    """Parallel writers and readers on the threaded server: every write lands exactly once."""
    import threading

    errors: list[str] = []

    def writer(n: int) -> None:
        client = ApiClient(api.socket_path, timeout_s=30)
        try:
            for i in range(5):
                client.post("/resources", {"sid": f"fa:{n * 10 + i}"})
                client.get("/status/current")
        except ApiClientError as exc:
            errors.append(exc.message)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted(api.backend.read_state().resources) == sorted(f"fa:{n * 10 + i}" for n in range(1, 7)
                                                                for i in range(5))


def test_events_without_status_writes(api: LocalApi, client: ApiClient) -> None:
    client.post("/resources", {"sid": "fa:1"})
    for round_no in range(3):   # each different: the store keeps no event for an unchanged status
        api.backend.write_manager_status("node1", {"master_node": "node1", "node_status": {},
                                                   "service_status": {}, "timestamp": 1000.0 + round_no})
    client.post("/resources", {"sid": "fa:2"})
    api.backend.write_lrm_status("node2", {"mode": "active", "state": "active", "results": {}})
    everything = client.get("/events", limit=1000)
    assert sum(e["op"] == "manager_status_set" for e in everything) == 3
    quiet = client.get("/events", include_status=0, limit=1000)
    assert [e["op"] for e in quiet if e["op"].endswith("_status_set")] == []
    assert [e["seq"] for e in quiet] == [e["seq"] for e in everything if not e["op"].endswith("_status_set")]
    latest = client.get("/events", include_status=0, limit=1)
    assert [e["op"] for e in latest] == ["lease_acquire"] and "agent:node2" in latest[0]["detail"]
    first_add = next(e["seq"] for e in everything if e["op"] == "resource_add")
    after = client.get("/events", include_status=0, after=first_add, limit=2)
    assert [e["op"] for e in after] == ["lease_acquire", "resource_add"]
    expect_error(lambda: client.get("/events", include_status="sometimes"), 400, "include_status")
