"""/cluster/members: the Raft membership and the HA node list of a running cluster
(`harepl cluster ...`, Proxmox's `pvecm nodes|add|delnode`). The logic is
`harepl.runtime.membership.Membership`, which the daemon hangs on its backend as
`backend.membership`; a backend without one (the single-node `LocalStoreBackend`)
answers 501.
"""

from __future__ import annotations

from typing import Any

from harepl.runtime.api.errors import ApiError, bad_request


def _membership(req: Any) -> Any:
    m = getattr(req.backend, "membership", None)
    if m is None:
        raise ApiError(501, "membership changes need the node daemon (this API has no Raft store)")
    return m


def _call(fn: Any, *args: Any) -> Any:
    # refusals are `MembershipError`, an ApiError: answered as they are (this module
    # does not import the membership code, which pulls in the Raft store)
    return fn(*args)


def members_index(req: Any) -> Any:
    if req.query:
        raise bad_request(f"unknown query parameter '{sorted(req.query)[0]}'")
    return _call(_membership(req).view)


def members_add(req: Any) -> Any:
    body = req.body
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object {\"node\": NAME, \"addr\": \"HOST:PORT\"}")
    unknown = sorted(set(body) - {"node", "addr"})
    if unknown:
        raise bad_request(f"unknown field '{unknown[0]}' (known: addr, node)")
    for key in ("node", "addr"):
        if key not in body:
            raise bad_request(f"missing field '{key}'")
    return _call(_membership(req).add, body["node"], body["addr"])


def members_remove(req: Any) -> Any:
    return _call(_membership(req).remove, req.params["node"])


ROUTES_SPEC = [
    ("GET", "/cluster/members", members_index),
    ("POST", "/cluster/members", members_add),
    ("DELETE", "/cluster/members/{node}", members_remove),
]
