"""/metrics through the API, parsed with prometheus_client's own text parser."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harepl.runtime.api.client import ApiClient
from harepl.runtime.api.local_backend import LocalApi


@pytest.fixture
def api() -> Iterator[LocalApi]:
    path = tempfile.mkdtemp(prefix="hmet-", dir="/tmp")
    with LocalApi(path) as running:
        yield running
    shutil.rmtree(path, ignore_errors=True)


def scrape(api: LocalApi) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = ApiClient(api.socket_path).request("GET", "/metrics")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_state_metrics_follow_the_store(api: LocalApi) -> None:
    client = ApiClient(api.socket_path)
    client.post("/resources", {"sid": "fa:100"})
    client.post("/resources", {"sid": "fa:101"})
    api.backend.write_manager_status("node2", {
        "master_node": "node2", "timestamp": time.time(),
        "node_status": {"node1": "online", "node2": "online", "node3": "fence"},
        "service_status": {"fa:100": {"state": "started", "node": "node1", "uid": "a"},
                           "fa:101": {"state": "fence", "node": "node3", "uid": "b"}}})
    m = scrape(api)
    assert m[("harepl_quorate", ())] == 1
    assert m[("harepl_master", (("node", "node2"),))] == 1
    assert ("harepl_master", (("node", "node1"),)) not in m
    assert m[("harepl_node_state", (("harepl_node_state", "fence"), ("node", "node3")))] == 1
    assert m[("harepl_node_state", (("harepl_node_state", "online"), ("node", "node3")))] == 0
    assert m[("harepl_service_state", (("harepl_service_state", "started"), ("sid", "fa:100")))] == 1
    assert m[("harepl_services", (("state", "fence"),))] == 1
    assert m[("harepl_services", (("state", "stopped"),))] == 0

    # the master moves and a service goes away: stale labels disappear
    api.backend.write_manager_status("node1", {
        "master_node": "node1", "timestamp": time.time(), "node_status": {"node1": "online"},
        "service_status": {"fa:100": {"state": "stopped", "node": "node1", "uid": "c"}}})
    m = scrape(api)
    assert m[("harepl_master", (("node", "node1"),))] == 1
    assert ("harepl_master", (("node", "node2"),)) not in m
    assert not any(name == "harepl_service_state" and ("sid", "fa:101") in labels for name, labels in m)


def test_pushed_metrics(api: LocalApi) -> None:
    api.metrics.set_lease_age("agent:node1", 1.5)
    api.metrics.count_transition("started", "fence")
    api.metrics.count_transition("started", "fence")
    with api.metrics.time_agent_action("exec", "start") as outcome:
        outcome["result"] = "ok"
    with pytest.raises(RuntimeError):
        with api.metrics.time_agent_action("ocf", "stop"):
            raise RuntimeError("agent blew up")
    m = scrape(api)
    assert m[("harepl_lease_age_seconds", (("lease", "agent:node1"),))] == 1.5
    assert m[("harepl_service_transitions_total", (("from_state", "started"), ("to_state", "fence")))] == 2
    assert m[("harepl_agent_action_duration_seconds_count",
              (("action", "start"), ("agent", "exec"), ("result", "ok")))] == 1
    assert m[("harepl_agent_action_duration_seconds_count",
              (("action", "stop"), ("agent", "ocf"), ("result", "error")))] == 1
    api.metrics.forget_lease("agent:node1")
    assert ("harepl_lease_age_seconds", (("lease", "agent:node1"),)) not in scrape(api)


def test_metrics_when_the_backend_cannot_answer(api: LocalApi) -> None:
    from harepl.runtime.api.backend import BackendUnavailable

    def unavailable(fresh: bool = False):  # type: ignore[no-untyped-def]
        raise BackendUnavailable("store closed")

    api.backend.read_state = unavailable  # type: ignore[method-assign]
    m = scrape(api)
    assert m[("harepl_quorate", ())] == 0
