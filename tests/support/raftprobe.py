"""Probe a harepl Raft port on 127.0.0.0/8 as an outsider (the tests' own copy of the
issue-8 probe): garbage, frames sealed with the wrong secret, oversized announcements,
big garbage frames, floods of idle connections, and a full key exchange with the right
secret but a non-member address.

    python tests/support/raftprobe.py PORT MODE [ARGS]
    MODES: garbage | wrongsecret | oversize | bigframe MIB | flood N HOLD_S
           | handshake SECRET_FILE ADDRESS

pysyncobj's frame: a 4-byte native int length, then a Fernet token (cluster secret) of
zlib(pickle(message)).  Used by tests/store/test_raft_port.py and
tests/cluster/test_raft_port_lab.py; nothing here imports harepl.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
import zlib
from typing import Any

HOST = "127.0.0.1"


def connect(port: int, host: str = HOST, timeout_s: float = 5.0) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout_s)


def closed_by_peer(s: socket.socket, wait_s: float = 3.0) -> str:
    """'closed' or 'reset' (the peer dropped us), 'still open', or 'got N bytes'."""
    s.settimeout(wait_s)
    try:
        d = s.recv(4096)
        return "closed" if d == b"" else f"got {len(d)} bytes"
    except TimeoutError:
        return "still open"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"


def frame(data: bytes) -> bytes:
    return struct.pack("i", len(data)) + data


def _encryptor(secret: str) -> Any:
    from pysyncobj.encryptor import getEncryptor
    return getEncryptor(secret)


def _seal(enc: Any, message: Any) -> bytes:
    from pysyncobj import pickle as ppickle
    return frame(enc.encrypt_at_time(zlib.compress(ppickle.dumps(message), 3), int(time.monotonic())))


def garbage(port: int, host: str = HOST) -> dict[str, str]:
    out = {}
    for name, payload in (("garbage 4096 B", os.urandom(4096)),
                          ("http request", b"GET / HTTP/1.0\r\n\r\n"),
                          ("framed raw pickle-ish", struct.pack("i", 20) + b"\x80\x04garbagepickle....")):
        with connect(port, host) as s:
            s.sendall(payload)
            out[name] = closed_by_peer(s)
    return out


def wrongsecret(port: int, host: str = HOST) -> dict[str, Any]:
    """The first key-exchange frame sealed with another secret; an evil pickle, plain
    and sealed with another secret.  'pwned' must stay False."""
    import pickle
    marker = f"/tmp/raftprobe-PWNED-{os.getpid()}"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    enc = _encryptor("not-the-cluster-secret")
    out: dict[str, Any] = {}
    with connect(port, host) as s:
        s.sendall(_seal(enc, os.urandom(32)))
        out["handshake, wrong secret"] = closed_by_peer(s)
    payload = zlib.compress(pickle.dumps(Evil()), 3)
    with connect(port, host) as s:
        s.sendall(frame(payload))
        out["unencrypted evil pickle"] = closed_by_peer(s)
    with connect(port, host) as s:
        s.sendall(frame(enc.encrypt_at_time(payload, int(time.monotonic()))))
        out["evil pickle, wrong secret"] = closed_by_peer(s)
    time.sleep(1)
    out["pwned"] = os.path.exists(marker)
    return out


def oversize(port: int, host: str = HOST) -> dict[str, str]:
    out = {}
    for name, n in (("announce 2 GiB", 2**31 - 1), ("announce negative", -5)):
        with connect(port, host) as s:
            s.sendall(struct.pack("i", n))
            out[name] = closed_by_peer(s)
    return out


def bigframe(port: int, mib: int, host: str = HOST) -> dict[str, Any]:
    """Announce a `mib` MiB frame and stream garbage (Fernet-looking) until it is sent or
    the peer drops us.  Returns bytes sent, seconds, and how the peer answered."""
    n = mib << 20
    chunk = b"gAAAAA" + b"A" * (1 << 20)
    sent, error = 0, None
    t0 = time.monotonic()
    with connect(port, host, timeout_s=60) as s:
        try:
            s.sendall(struct.pack("i", n))
            while sent < n:
                k = min(len(chunk), n - sent)
                s.sendall(chunk[:k])
                sent += k
        except OSError as e:
            error = f"{type(e).__name__}: {e}"
        seconds = time.monotonic() - t0
        answer = "reset" if error else closed_by_peer(s, 10)
    return {"mib": mib, "sent": sent, "error": error, "seconds": seconds, "answer": answer}


def flood(port: int, n: int, host: str = HOST) -> tuple[list[socket.socket], int]:
    """Open `n` idle connections; returns them and how many failed to connect."""
    socks, errs = [], 0
    for _ in range(n):
        try:
            socks.append(connect(port, host))
        except OSError:
            errs += 1
    return socks, errs


def still_open(socks: list[socket.socket]) -> int:
    """How many of `socks` the peer has not closed (non-blocking check)."""
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) != b"":
                alive += 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def handshake(port: int, secret: str, address: str, host: str = HOST) -> str:
    """pysyncobj's key exchange with the right secret, then name `address` (a member
    would name its own Raft address).  Returns how the peer answered that."""
    from pysyncobj import pickle as ppickle
    enc = _encryptor(secret)
    with connect(port, host) as s:
        k1 = os.urandom(32)
        s.sendall(_seal(enc, k1))
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack("i", buf[:4])[0]:
            d = s.recv(4096)
            if not d:
                return "closed during the key exchange"
            buf += d
        (n,) = struct.unpack("i", buf[:4])
        echoed, k2 = ppickle.loads(zlib.decompress(enc.decrypt(buf[4:4 + n])))
        if echoed != k1:
            return "bad key exchange answer"
        s.sendall(_seal(enc, (k2, address)))
        return closed_by_peer(s)


def main(argv: list[str]) -> int:
    port, mode = int(argv[0]), argv[1]
    if mode == "garbage":
        print(garbage(port))
    elif mode == "wrongsecret":
        print(wrongsecret(port))
    elif mode == "oversize":
        print(oversize(port))
    elif mode == "bigframe":
        print(bigframe(port, int(argv[2])))
    elif mode == "flood":
        socks, errs = flood(port, int(argv[2]))
        print(f"flood: {len(socks)} connections open, {errs} failed; holding {argv[3]} s")
        time.sleep(float(argv[3]))
        print(f"after hold: {still_open(socks)} still open")
        for s in socks:
            s.close()
    elif mode == "handshake":
        with open(argv[2]) as f:
            print(handshake(port, f.read().strip(), argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
