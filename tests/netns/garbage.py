#!/usr/bin/env python3
"""An outsider on a node's Raft port: the Jepsen test's garbage-frame fault.

    python tests/netns/garbage.py --host ADDR --port PORT --for SECONDS [--big-mib N] [--seed S]

Run from a namespace that is no member (`netlab.Topology.add_outsider`).  Until
`--for` seconds have passed (and each kind was sent once) it cycles through: random bytes (1-64 KiB) on a fresh
connection; a length-prefixed frame announcing `--big-mib` MiB (default 60) followed
by that much Fernet-looking garbage, streamed until it is all sent or the peer drops
us; an announcement of a 2 GiB frame; a negative length.  pysyncobj's frame is a 4-byte
native int length, then the (Fernet) token.  Prints one JSON line per attempt (what was
sent, how many bytes, how the peer answered) and a summary line at the end.

Standard library only (tests/support/raftprobe.py is another engineer's 127.0.0.1 probe;
this one runs between namespaces and loops for the length of a nemesis hold).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import time


def _answer(s: socket.socket, wait_s: float) -> str:
    s.settimeout(wait_s)
    try:
        d = s.recv(4096)
        return "closed" if d == b"" else f"got {len(d)} bytes"
    except TimeoutError:
        return "still open"
    except OSError as e:
        return f"reset ({type(e).__name__})"


def attempt(host: str, port: int, kind: str, rng: random.Random, big_mib: int) -> dict[str, object]:
    rec: dict[str, object] = {"kind": kind, "sent": 0}
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=5.0) as s:
            s.settimeout(20.0)
            if kind == "random":
                payload = rng.randbytes(rng.randint(1024, 65536))
                s.sendall(payload)
                rec["sent"] = len(payload)
            elif kind == "bigframe":
                n = big_mib << 20
                chunk = b"gAAAAA" + bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef") for _ in range(4090))
                chunk = chunk * 256  # 1 MiB
                sent = 0
                try:
                    s.sendall(struct.pack("i", n))
                    while sent < n:
                        k = min(len(chunk), n - sent)
                        s.sendall(chunk[:k])
                        sent += k
                except OSError as e:
                    rec["error"] = type(e).__name__
                rec["sent"] = sent
            elif kind == "announce-2GiB":
                s.sendall(struct.pack("i", 2**31 - 1))
                rec["sent"] = 4
            elif kind == "negative":
                s.sendall(struct.pack("i", -5))
                rec["sent"] = 4
            rec["answer"] = "reset" if "error" in rec else _answer(s, 3.0)
    except OSError as e:
        rec["answer"] = f"connect failed ({type(e).__name__})"
        time.sleep(0.2)  # the node is down or cut off: do not spin
    rec["seconds"] = round(time.monotonic() - t0, 2)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="garbage and oversized frames on a Raft port")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--for", dest="for_s", type=float, required=True)
    ap.add_argument("--big-mib", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    until = time.monotonic() + args.for_s
    kinds = ["random", "bigframe", "announce-2GiB", "negative", "random"]
    counts: dict[str, int] = {}
    total = 0
    i = 0
    while True:
        kind = kinds[i % len(kinds)]
        rec = attempt(args.host, args.port, kind, rng, args.big_mib)
        counts[kind] = counts.get(kind, 0) + 1
        total += int(rec["sent"])  # type: ignore[call-overload]
        print(json.dumps(rec), flush=True)
        i += 1
        if time.monotonic() >= until and i >= 4:  # every kind at least once
            break
    print(json.dumps({"summary": counts, "bytes": total}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
