"""A stand-alone store member: ``python tests/support/store_node.py`` (started by
`tests.support.localcluster`, whose `STORE_NODE` is this command line).

Used by the tests and the benchmark to run real store processes; the daemon embeds
`StoreNode` directly, so this is not part of the shipped package.  It serves a small JSON-lines control protocol on a Unix socket
inside its data directory (0700): one request object per line, one reply per line.

    {"call": "submit", "cmd": {...}, "timeout": 5}      -> {"result": {...}}
    {"call": "status"}                                   -> {"result": {...}}
    {"call": "read", "what": "events", "args": [..], "linearizable": true}
    {"call": "dump", "linearizable": false}              -> {"result": "<sqlite dump>"}
    {"call": "member", "action": "add"|"remove", "addr": "h:p"}
    {"call": "compact"}
    {"call": "bench_latency", "n": 200}                  -> {"result": [seconds, ...]}
    {"call": "bench_throughput", "n": 5000, "inflight": 100} -> {"result": seconds}
Errors: {"error": "one line"}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socketserver
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

if __name__ == "__main__" and __package__ in (None, ""):
    # run as a script: its own directory (tests/support) must not shadow anything
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harepl.store import reads  # noqa: E402
from harepl.store import vocabulary as C  # noqa: E402
from harepl.store.client import Client, StoreUnavailable  # noqa: E402
from harepl.store.raft import RaftSettings, SecretMissing, StoreNode  # noqa: E402

_READS: dict[str, Callable[..., Any]] = {"manager_status": reads.manager_status, "lrm_status": reads.lrm_status,
          "lrm_statuses": reads.lrm_statuses, "service_config": reads.service_config,
          "groups": reads.groups, "rules": reads.rules, "crm_commands": reads.crm_commands,
          "leases": reads.leases, "lease": reads.lease, "nodes": reads.nodes, "events": reads.events,
          "result_of": reads.result_of, "applied_count": reads.applied_count}


def read_secret(path: str | None) -> str:
    """The cluster secret from a root-only file; SecretMissing with one line otherwise."""
    if not path:
        raise SecretMissing("refusing to start without a cluster secret (--secret-file): pysyncobj's "
                            "wire format is pickle, so anyone reaching the Raft port could run code here")
    try:
        st = os.stat(path)
        with open(path) as f:
            secret = f.read().strip()
    except OSError as e:
        raise SecretMissing(f"cannot read cluster secret {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretMissing(f"cluster secret {path} is accessible by group/others "
                            f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    if not secret:
        raise SecretMissing(f"cluster secret {path} is empty")
    return secret


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        for line in self.rfile:
            try:
                req = json.loads(line)
                reply = {"result": self.server.dispatch(req)}
            except (StoreUnavailable, ValueError, KeyError, TypeError) as e:
                reply = {"error": f"{type(e).__name__}: {e}"}
            self.wfile.write((json.dumps(reply) + "\n").encode())
            self.wfile.flush()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, client: Client) -> None:
        self.client = client
        super().__init__(path, _Handler)

    def dispatch(self, req: dict[str, Any]) -> Any:
        c = self.client
        call = req["call"]
        timeout = req.get("timeout")
        if call == "submit":
            return c.submit(req["cmd"], timeout)
        if call == "status":
            return c.status()
        if call == "read":
            fn = _READS[req["what"]]
            return c.read(lambda conn: fn(conn, *req.get("args", [])), req.get("linearizable", True), timeout)
        if call == "dump":
            return c.read(reads.dump, req.get("linearizable", False), timeout)
        if call == "member":
            c._membership(req["action"], req["addr"], timeout)
            return c.status()["members"]
        if call == "compact":
            c.node.force_compaction()
            return True
        if call == "bench_latency":
            out = []
            for _ in range(int(req["n"])):
                t0 = time.perf_counter()
                c.submit(C.noop(), timeout)
                out.append(time.perf_counter() - t0)
            return out
        if call == "bench_throughput":
            return _throughput(c, int(req["n"]), int(req["inflight"]))
        raise ValueError(f"unknown call {call!r}")


def _throughput(c: Client, n: int, inflight: int) -> float:
    """Commit n no-ops keeping `inflight` outstanding; seconds taken."""
    sem = threading.Semaphore(inflight)
    done = threading.Event()
    left = [n]
    lock = threading.Lock()

    def cb(res: Any, err: str | None) -> None:
        sem.release()
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    t0 = time.perf_counter()
    for _ in range(n):
        sem.acquire()
        c.node.submit_async(C.encode(C.noop()), cb)
    if not done.wait(120):
        raise StoreUnavailable("throughput run did not finish within 120 s")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="store_node.py", description=__doc__.split("\n")[0])
    ap.add_argument("--addr", required=True, help="this member's Raft address host:port")
    ap.add_argument("--peers", required=True, help="comma-separated Raft addresses of all members")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--secret-file")
    ap.add_argument("--control", help="control socket path (default DATA_DIR/control.sock)")
    ap.add_argument("--compact-entries", type=int, default=RaftSettings.log_compaction_min_entries)
    ap.add_argument("--no-durable", action="store_true", help="benchmark comparison only: no fsync")
    ap.add_argument("--max-db-pages", type=int, help="test knob: cap the SQLite database size")
    args = ap.parse_args(argv)
    os.umask(0o077)  # root-only files, also those pysyncobj replaces by rename (journal meta)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)
    try:
        secret = read_secret(args.secret_file)
        settings = RaftSettings(log_compaction_min_entries=args.compact_entries, durable=not args.no_durable)
        node = StoreNode(args.addr, args.peers.split(","), args.data_dir, secret, settings,
                         max_db_pages=args.max_db_pages)
    except SecretMissing as e:
        print(f"harepl store: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - bind error etc.: one line, no traceback
        print(f"harepl store: cannot start: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    control = args.control or os.path.join(args.data_dir, "control.sock")
    if os.path.exists(control):
        os.unlink(control)
    server = _Server(control, Client(node))
    os.chmod(control, 0o600)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    logging.getLogger("harepl.store.node").info("store member %s up (members %s)", args.addr, node.members())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
