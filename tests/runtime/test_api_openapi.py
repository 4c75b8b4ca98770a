"""docs/openapi.yaml describes exactly the routes the server has."""

from __future__ import annotations

from pathlib import Path

import yaml

from harepl.runtime.api.routes import EXTRA_ROUTES, ROUTES

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def _spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def test_spec_and_server_have_the_same_routes() -> None:
    spec = _spec()
    assert spec["openapi"].startswith("3.")
    in_spec = {(method.upper(), path) for path, item in spec["paths"].items()
               for method in item if method in METHODS}
    in_server = {(r.method, r.template) for r in ROUTES} | set(EXTRA_ROUTES)
    assert in_spec - in_server == set(), "described but not served"
    assert in_server - in_spec == set(), "served but not described"


def test_every_path_parameter_is_declared() -> None:
    spec = _spec()
    params = spec["components"]["parameters"]
    for path, item in spec["paths"].items():
        declared = set()
        for p in item.get("parameters", []):
            p = params[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
            declared.add(p["name"])
        expected = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
        assert declared == expected, path


def test_every_ref_resolves() -> None:
    spec = _spec()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                _hash, section, kind, name = node["$ref"].split("/")
                assert name in spec[section][kind], node["$ref"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)


def test_membership_refusals_are_described() -> None:
    """/cluster/members: each change documents its 4xx refusals (one-line errors)."""
    paths = _spec()["paths"]
    assert {"400", "409", "503"} <= set(paths["/cluster/members"]["post"]["responses"])
    assert {"404", "409", "503"} <= set(paths["/cluster/members/{node}"]["delete"]["responses"])
    member = _spec()["components"]["schemas"]["Member"]["properties"]
    assert {"node", "addr", "raft_member", "ha_node", "responds", "leader", "joining"} <= set(member)
