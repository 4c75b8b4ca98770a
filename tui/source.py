"""Where the TUI's data comes from: one interface, two implementations (as harlequin's
adapters): `LiveSource` (the daemons' local APIs, with failover to another member) and
`tui.simsource.SimSource` (the real core on the simulator).

Every method blocks and is called from a worker thread only, one call at a time per
kind (the app runs one refresh at a time; actions are serialised by a lock here).
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harepl.runtime.api.client import ApiClient, ApiClientError
from tui.model import Snapshot

EVENTS_PAGE = 1000          # the API's largest page
_LEASE_LINE = re.compile(r'^harepl_lease_age_seconds\{lease="agent:([^"]+)"\}\s+(\S+)$', re.M)


class SourceError(Exception):
    """The source cannot answer: one line for the operator (`unreachable` when the node
    itself is gone, as opposed to an answer that refuses)."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


class DataSource(ABC):
    """What the screens need: a snapshot, the history, and requests (the API's routes
    and bodies, so one action layer serves both sources)."""

    kind = "live"
    read_only = False

    @property
    @abstractmethod
    def target(self) -> str:
        """Where the data comes from now (shown in the title and the health bar)."""

    @abstractmethod
    def fetch(self, on_switch: Callable[[str], None] | None = None) -> Snapshot:
        """One refresh. Raises SourceError. `on_switch(line)` is told at once when the
        current endpoint failed and another one is being tried."""

    @abstractmethod
    def events(self, after_seq: int | None) -> list[dict[str, Any]]:
        """History after `after_seq` (the latest page when None), oldest first."""

    @abstractmethod
    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API request; raises ApiClientError with the refusal's one line."""

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def health_label(self, snap: Snapshot | None) -> str | None:
        """Where the health bar says the data comes from (None: the API node's name)."""
        return None


def lab_sockets(target: str) -> list[str]:
    """The other members' API sockets of a `harepl lab` directory (DIR/<node>/api.sock)."""
    path = Path(target)
    if path.name != "api.sock" or not path.parent.parent.is_dir():
        return []
    return sorted(str(p) for p in path.parent.parent.glob("*/api.sock") if str(p) != target)


def _lease_ages(metrics: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for node, value in _LEASE_LINE.findall(metrics):
        try:
            out[node] = float(value)
        except ValueError:
            continue
    return out


class LiveSource(DataSource):
    """The local API of one member, and the others to fall back on.

    Endpoints: the one given first, then the ones given with it (`--api` repeated), then
    the lab directory's other sockets, then the members /cluster/members names whose
    socket can be found next to the first one (the membership holds Raft addresses
    only, no API endpoints). When the current endpoint is unreachable or not quorate,
    the next one that answers quorate is taken; when none does, the current one's
    answer (or error) is what the TUI shows.
    """

    def __init__(self, targets: list[str], token: str | None = None, timeout_s: float = 5.0,
                 client_factory: Callable[[str], ApiClient] | None = None) -> None:
        if not targets:
            raise ValueError("at least one API address")
        self._factory = client_factory or (lambda t: ApiClient(t, token, timeout_s=timeout_s))
        self.clients = {t: self._factory(t) for t in targets}   # raises ApiClientError for a bad address
        self.order = list(targets)
        for extra in lab_sockets(targets[0]):
            self._add(extra)
        self.current = targets[0]
        self._lock = threading.Lock()
        self._fetches = 0

    def _add(self, target: str) -> None:
        if target not in self.clients:
            try:
                self.clients[target] = self._factory(target)
            except ApiClientError:
                return
            self.order.append(target)

    @property
    def target(self) -> str:
        return self.current

    @property
    def client(self) -> ApiClient:
        return self.clients[self.current]

    def _read(self, client: ApiClient) -> Snapshot:
        manager = client.get("/status/manager_status")
        # (/status/current is not read: its lines are made from these same answers)
        snap_parts = dict(status=[], manager=manager, nodes=client.get("/nodes"), resources=client.get("/resources"))
        lease_age: dict[str, float] | None
        try:
            lease_age = _lease_ages(str(client.get("/metrics"))) or None
        except ApiClientError:
            lease_age = None        # an API without /metrics: the LRM timestamp stands in
        return Snapshot(**snap_parts, wall_time_s=time.time(), lease_age=lease_age, via=client.target)

    def _discover(self, client: ApiClient) -> None:
        """Members named by the membership, at the lab's socket layout."""
        try:
            members = client.get("/cluster/members").get("members") or []
        except (ApiClientError, AttributeError):
            return
        first = Path(self.order[0])
        if first.name != "api.sock":
            return
        for m in members:
            if m.get("node"):
                candidate = first.parent.parent / str(m["node"]) / "api.sock"
                if candidate.exists():
                    self._add(str(candidate))

    def fetch(self, on_switch: Callable[[str], None] | None = None) -> Snapshot:
        first_error: SourceError | None = None
        first_snap: Snapshot | None = None
        start = self.current
        candidates = [start] + [t for t in self.order if t != start]
        for i, target in enumerate(candidates):
            client = self.clients[target]
            try:
                snap = self._read(client)
            except ApiClientError as exc:
                error = SourceError(f"{target}: {exc.message}", unreachable=exc.status is None)
                if i == 0:
                    first_error = error
                    if on_switch is not None and len(candidates) > 1:
                        on_switch(f"API at {target} failed ({exc.message}); trying the other members")
                continue
            if i == 0:
                if snap.quorate:
                    self._fetches += 1
                    if self._fetches % 20 == 1:     # the membership rarely changes
                        self._discover(client)
                    return snap
                first_snap = snap
                if on_switch is not None and len(candidates) > 1:
                    on_switch(f"{snap.api_node} has no quorum; trying the other members")
                continue
            if snap.quorate:
                self.current = target
                return snap
        if first_snap is not None:
            return first_snap
        assert first_error is not None
        raise first_error

    def events(self, after_seq: int | None) -> list[dict[str, Any]]:
        client = self.client
        try:
            if after_seq is None:
                return list(self._events_page(client, limit=EVENTS_PAGE))
            out: list[dict[str, Any]] = []
            for _ in range(5):
                page = self._events_page(client, after=after_seq, limit=EVENTS_PAGE)
                out.extend(page)
                if len(page) < EVENTS_PAGE:
                    break
                after_seq = page[-1]["seq"]
            return out
        except ApiClientError as exc:
            raise SourceError(f"history: {exc.message}", unreachable=exc.status is None) from None

    @staticmethod
    def _events_page(client: ApiClient, **query: Any) -> list[dict[str, Any]]:
        try:
            return list(client.get("/events", include_status=0, **query))
        except ApiClientError as exc:
            # a daemon older than include_status (a rolling upgrade): everything, filtered by the log
            if exc.status == 400 and "include_status" in exc.message:
                return list(client.get("/events", **query))
            raise

    def request(self, method: str, path: str, body: Any = None) -> Any:
        with self._lock:
            return self.client.request(method, path, body)
