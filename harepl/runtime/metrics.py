"""Prometheus metrics for one node, served at the API's `/metrics`.

`HaMetrics` owns its own CollectorRegistry (several daemons can live in one test process).
State gauges (quorum, master, node and service states) are refreshed from the ClusterState
at every scrape; the daemon pushes what only it sees: lease ages, state transitions and
agent action durations.

    metrics = HaMetrics()
    metrics.set_lease_age("agent:node1", age_s)            # monotonic seconds since renewal
    metrics.count_transition("started", "fence")
    with metrics.time_agent_action("exec", "start") as outcome:
        ...; outcome["result"] = "ok"                      # or "error"/"timeout"
    handle = serve_api(backend, unix_path=..., metrics=metrics)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from harepl.core import vocabulary

if TYPE_CHECKING:
    from harepl.runtime.api.backend import ClusterState

# the Enum metrics' states: the vocabulary's, in its order
NODE_STATES = list(vocabulary.NODE_STATES)
SERVICE_STATES = list(vocabulary.SERVICE_STATES)
AGENT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class HaMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        r = self.registry
        self.quorate = Gauge("harepl_quorate", "1 if this node is in the quorate partition", registry=r)
        self.master = Gauge("harepl_master", "1 for the node that is CRM master", ["node"], registry=r)
        self.node_state = Enum("harepl_node_state", "CRM view of each node's state", ["node"],
                               states=NODE_STATES, registry=r)
        self.service_state = Enum("harepl_service_state", "CRM state of each service", ["sid"],
                                  states=SERVICE_STATES, registry=r)
        self.services = Gauge("harepl_services", "Services by CRM state", ["state"], registry=r)
        self.lease_age = Gauge("harepl_lease_age_seconds",
                               "Monotonic seconds since this node last saw the lease renewed",
                               ["lease"], registry=r)
        self.transitions = Counter("harepl_service_transitions",
                                   "Service state transitions seen by this node", ["from_state", "to_state"],
                                   registry=r)
        self.agent_duration = Histogram("harepl_agent_action_duration_seconds",
                                        "Duration of resource agent actions",
                                        ["agent", "action", "result"], buckets=AGENT_BUCKETS_S,
                                        registry=r)

    # --- pushed by the daemon -----------------------------------------------------------
    def set_lease_age(self, lease: str, age_s: float) -> None:
        self.lease_age.labels(lease=lease).set(age_s)

    def forget_lease(self, lease: str) -> None:
        try:
            self.lease_age.remove(lease)
        except KeyError:
            pass

    def count_transition(self, from_state: str, to_state: str) -> None:
        self.transitions.labels(from_state=from_state, to_state=to_state).inc()

    def observe_agent_action(self, agent: str, action: str, duration_s: float, result: str) -> None:
        self.agent_duration.labels(agent=agent, action=action, result=result).observe(duration_s)

    @contextmanager
    def time_agent_action(self, agent: str, action: str) -> Iterator[dict[str, str]]:
        """Times the block on the monotonic clock; result 'error' if it raises."""
        outcome = {"result": "ok"}
        start_s = time.monotonic()
        try:
            yield outcome
        except BaseException:
            outcome["result"] = "error"
            raise
        finally:
            self.observe_agent_action(agent, action, time.monotonic() - start_s, outcome["result"])

    # --- refreshed from the store at scrape time ------------------------------------------
    def update_state(self, state: ClusterState | None) -> None:
        with self._lock:
            self._update_state(state)

    def _update_state(self, state: ClusterState | None) -> None:
        self.master.clear()
        self.node_state.clear()
        self.service_state.clear()
        self.services.clear()
        if state is None:       # the backend could not answer: we know only that
            self.quorate.set(0)
            return
        self.quorate.set(1 if state.quorate else 0)
        manager: dict[str, Any] = state.manager_status or {}
        if manager.get("master_node"):
            self.master.labels(node=str(manager["master_node"])).set(1)
        for node, node_state in sorted((manager.get("node_status") or {}).items()):
            if node_state in NODE_STATES:
                self.node_state.labels(node=node).state(node_state)
        counts = dict.fromkeys(SERVICE_STATES, 0)
        for sid, sd in sorted((manager.get("service_status") or {}).items()):
            service_state = sd.get("state")
            if service_state in SERVICE_STATES:
                self.service_state.labels(sid=sid).state(service_state)
                counts[service_state] += 1
        for service_state, count in counts.items():
            self.services.labels(state=service_state).set(count)

    def render(self, state: ClusterState | None) -> tuple[bytes, str]:
        """Refresh from `state` and return (exposition text, content type)."""
        with self._lock:
            self._update_state(state)
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
