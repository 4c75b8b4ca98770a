"""harepl.core.vocabulary is the one home of states, defaults and name rules: every layer
uses its values, and the two decisions it records hold where they apply (a missing
``state`` is ``started`` in the configuration and ``disabled`` in a simulator scenario;
a new node name follows Proxmox's rule while names already committed stay valid)."""

from __future__ import annotations

import pytest

from harepl.core import types, vocabulary
from harepl.core.config import ConfigError, normalize_service_config, parse_groups
from harepl.runtime.api import validate
from harepl.runtime.api.backend import ClusterState
from harepl.runtime.api.errors import ApiError
from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.ops import resources
from harepl.store.schema import connect
from tests.store.applying import ok


def test_each_enum_is_its_on_disk_spelling_with_a_meaning() -> None:
    enums = (vocabulary.ServiceType, vocabulary.RequestedState, vocabulary.ServiceState,
             vocabulary.NodeState, vocabulary.CrmState, vocabulary.LrmState, vocabulary.LrmMode,
             vocabulary.ShutdownPolicy, vocabulary.CrsMode, vocabulary.RuleType, vocabulary.Affinity)
    source = open(vocabulary.__file__, encoding="utf-8").read()
    for enum in enums:
        assert enum.__doc__ and enum.__doc__.strip()
        for member in enum:
            assert member == member.value
            line = next(ln for ln in source.splitlines() if ln.strip().startswith(f'{member.name} = "'))
            assert "#:" in line, f"{enum.__name__}.{member.name} has no one-line meaning"


def test_core_types_agree_with_the_vocabulary() -> None:
    """Until core/types.py imports them, its tuples must say the same."""
    assert types.SERVICE_STATES == vocabulary.SERVICE_STATES
    assert types.REQUESTED_STATES == vocabulary.REQUESTED_STATES
    assert types.NODE_STATES == vocabulary.NODE_STATES


def test_one_list_of_what_a_service_edit_may_delete() -> None:
    assert "params" in vocabulary.RESOURCE_DELETABLE
    assert resources.UPDATE.fields["delete"].check("delete", ["params"]) == ["params"]
    assert validate._parse_delete(["params", "params.x"], vocabulary.RESOURCE_DELETABLE, "params.") == \
        ["params", "params.x"]
    assert validate.RESOURCE_DEFAULTS == {k: v for k, v in vocabulary.SERVICE_DEFAULTS.items() if k != "state"}


def test_a_configured_service_without_state_is_started() -> None:
    """Proxmox's Config.pm read_and_check_resources_config / Resources.pm default."""
    conn = connect()
    ok(conn, C.resource_add("exec:a", {"node": "n1"}, ts=1.0))
    assert reads.service(conn, "exec:a")["state"] == vocabulary.DEFAULT_REQUESTED_STATE == "started"
    state = ClusterState(node="n1", quorate=True, nodes=("n1",))
    assert validate.resource_add({"sid": "fa:1"}, state)["config"]["state"] == "started"


def test_a_scenario_service_without_state_is_disabled() -> None:
    """Proxmox's simulator, Sim/Hardware.pm read_service_config: the scenarios rely on it."""
    assert normalize_service_config({"vm:1": {"node": "n1"}})["vm:1"]["state"] == "disabled"
    assert normalize_service_config({"vm:1": {"node": "n1", "state": "enabled"}})["vm:1"]["state"] == "started"


@pytest.mark.parametrize(("name", "good"), [
    ("node1", True), ("n-1", True), ("a", True), ("x" * 63, True),
    ("node_1", False), ("node.example", False), ("-n", False), ("n-", False), ("x" * 64, False), ("", False),
])
def test_the_node_name_rule_is_proxmoxs(name: str, good: bool) -> None:
    assert vocabulary.is_node_name(name) is good


def test_new_node_names_are_held_to_the_rule_known_ones_are_not() -> None:
    state = ClusterState(node="n1", quorate=True, nodes=("n1", "old_node"))
    assert validate.parse_node_name("old_node", state) == "old_node"
    for bad in ("new_node", "a.b"):
        with pytest.raises(ApiError, match="invalid node name"):
            validate.parse_node_name(bad, state)
    with pytest.raises(ApiError, match="no such cluster node"):
        validate.parse_node_name("n2", state)
    with pytest.raises(ConfigError):
        parse_groups("group: g\n\tnodes node_1\n")


def test_the_store_still_takes_names_it_took_before() -> None:
    """`apply` must decide old entries as it did: no new rule in the store's checks."""
    conn = connect()
    ok(conn, C.resource_add("exec:a", {"node": "old_node.example"}, ts=1.0))
    assert reads.service(conn, "exec:a")["node"] == "old_node.example"
