#!/usr/bin/env python3
"""A delaying TCP relay: the Jepsen test's packet delay (this kernel has no netem).

    python tests/netns/relay.py --listen HOST:PORT --target HOST:PORT --delay-ms D
                                [--jitter-ms J] [--mark M]

Run inside a node's network namespace (`ip netns exec`), next to an nftables rule that
DNATs that node's outgoing connections to a peer's Raft port onto `--listen` (see
`netlab.Topology.delay_link`).  Every accepted connection gets its own upstream
connection to `--target`, marked with SO_MARK `--mark` so the DNAT rule lets it through;
each byte is held `D` ms (plus up to `J` ms of jitter) in each direction before it is
forwarded, in order (a chunk is never sent before the one read before it).  An EOF is
forwarded as a half-close after the same delay; an error on either side closes both.
Prints `listening` once it accepts connections; SIGTERM ends it, closing everything.

Nothing here imports harepl; standard library only.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import socket
import sys
import threading
import time

SO_MARK = getattr(socket, "SO_MARK", 36)
HALF_CLOSE_LOCK = threading.Lock()


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Pipe:
    """One direction: a reader thread queues (due, chunk), a writer thread sends each at
    its due time."""

    def __init__(self, src: socket.socket, dst: socket.socket, delay_s: float, jitter_s: float,
                 rng: random.Random, on_close: threading.Event, half_closed: list[int]) -> None:
        self.src, self.dst = src, dst
        self.delay_s, self.jitter_s, self.rng = delay_s, jitter_s, rng
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.cv = threading.Condition()
        self.closed = on_close
        self.half_closed = half_closed
        self.last_due = 0.0

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _put(self, chunk: bytes | None) -> None:
        due = max(self.last_due, time.monotonic() + self.delay_s + self.rng.uniform(0, self.jitter_s))
        self.last_due = due
        with self.cv:
            self.queue.append((due, chunk))
            self.cv.notify()

    def _read(self) -> None:
        try:
            while not self.closed.is_set():
                chunk = self.src.recv(65536)
                self._put(chunk or None)
                if not chunk:
                    return
        except OSError:
            self.closed.set()
            with self.cv:
                self.cv.notify()

    def _write(self) -> None:
        try:
            while True:
                with self.cv:
                    while not self.queue and not self.closed.is_set():
                        self.cv.wait(0.5)
                    if self.closed.is_set():
                        return
                    due, chunk = self.queue.popleft()
                wait = due - time.monotonic()
                if wait > 0 and self.closed.wait(wait):
                    return
                if chunk is None:
                    self.dst.shutdown(socket.SHUT_WR)
                    with HALF_CLOSE_LOCK:
                        self.half_closed[0] += 1
                        if self.half_closed[0] == 2:  # both directions ended: close both
                            self.closed.set()
                    return
                self.dst.sendall(chunk)
        except OSError:
            self.closed.set()


def serve(listen: tuple[str, int], target: tuple[str, int], delay_s: float, jitter_s: float,
          mark: int) -> None:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(listen)
    lsock.listen(16)
    print("listening", flush=True)
    rng = random.Random()
    while True:
        down, _ = lsock.accept()
        try:
            up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if mark:
                up.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
            up.settimeout(5.0)
            up.connect(target)
            up.settimeout(None)
        except OSError as e:
            print(f"upstream {target}: {e}", file=sys.stderr, flush=True)
            down.close()
            continue
        for s in (down, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        closed = threading.Event()
        half_closed = [0]
        Pipe(down, up, delay_s, jitter_s, rng, closed, half_closed).start()
        Pipe(up, down, delay_s, jitter_s, rng, closed, half_closed).start()
        threading.Thread(target=_closer, args=(closed, down, up), daemon=True).start()


def _closer(closed: threading.Event, *socks: socket.socket) -> None:
    closed.wait()
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="delaying TCP relay")
    ap.add_argument("--listen", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--mark", type=lambda s: int(s, 0), default=0)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(_addr(args.listen), _addr(args.target), args.delay_ms / 1000, args.jitter_ms / 1000, args.mark)
    return 0


if __name__ == "__main__":
    sys.exit(main())
