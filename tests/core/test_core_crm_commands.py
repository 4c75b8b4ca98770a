"""CRM commands as typed values: one table of verbs, each line parsed to one dataclass."""

from __future__ import annotations

import pytest

from harepl.core.crm_commands import (
    VERBS,
    ArmHa,
    DisarmHa,
    Move,
    NodeMaintenance,
    Stop,
    Unparsable,
    parse_crm_command,
)


@pytest.mark.parametrize(("line", "expected"), [
    ("disarm-ha freeze", DisarmHa("disarm-ha freeze", "freeze")),
    ("disarm-ha ignore", DisarmHa("disarm-ha ignore", "ignore")),
    ("arm-ha", ArmHa("arm-ha")),
    ("  migrate vm:100 node2 ", Move("migrate vm:100 node2", "migrate", "vm:100", "node2")),
    ("relocate ct:101 node3", Move("relocate ct:101 node3", "relocate", "ct:101", "node3")),
    ("stop vm:100 30", Stop("stop vm:100 30", "vm:100", "30")),
    ("enable-node-maintenance node1", NodeMaintenance("enable-node-maintenance node1", "node1", True)),
    ("disable-node-maintenance node1", NodeMaintenance("disable-node-maintenance node1", "node1", False)),
])
def test_each_verb_parses(line: str, expected: object) -> None:
    assert parse_crm_command(line) == expected


@pytest.mark.parametrize("line", ["", "bogus", "disarm-ha", "disarm-ha sometimes", "arm-ha now",
                                  "migrate vm:100", "stop vm:100 30 40", "enable-node-maintenance"])
def test_anything_else_is_unparsable(line: str) -> None:
    assert parse_crm_command(line) == Unparsable(line.strip())


def test_the_table_is_the_vocabulary() -> None:
    assert sorted(VERBS) == ["arm-ha", "disable-node-maintenance", "disarm-ha", "enable-node-maintenance",
                             "migrate", "relocate", "stop"]
