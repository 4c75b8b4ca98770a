"""The node's local API: HTTP + JSON on a Unix socket (root only), optionally TCP + token.

Entry point for the daemon:

    from harepl.runtime.api import serve_api
    handle = serve_api(backend, unix_path="/run/harepl/api.sock",
                       tcp=("0.0.0.0", 8006), token=token,   # optional; TCP needs a token
                       metrics=metrics)                       # optional HaMetrics
    ...
    handle.close()        # stops serving, removes the socket file

`backend` implements `ApiBackend` (backend.py): `read_state(fresh)`, `read_events(after_id,
limit)` and `submit(command) -> WriteResult`. Requests are served on background threads;
backend methods must be thread-safe and must not be called from pysyncobj's own thread.
`handle.tcp_address` is the bound (host, port) (useful with port 0).

Routes (all JSON; errors are `{"error": "one line"}` with a 4xx/5xx status) are listed in
`routes.ROUTES` and described in docs/openapi.yaml; `/metrics` is Prometheus text.
The CLI's client is `harepl.runtime.api.client.ApiClient`.
"""

from harepl.runtime.api.backend import ApiBackend, BackendUnavailable, ClusterState, WriteResult
from harepl.runtime.api.server import ApiHandle, serve_api

__all__ = ["ApiBackend", "ApiHandle", "BackendUnavailable", "ClusterState", "WriteResult", "serve_api"]
