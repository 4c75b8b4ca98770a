"""The HTTP layer: a threaded stdlib server on a Unix socket and/or TCP.

Why the standard library: the API is a handful of JSON routes for a local CLI/TUI; the
stdlib server needs no event loop beside pysyncobj's threads and no new dependency.

Security: the Unix socket is created 0600 inside a private directory and renamed into
place (no window where another user could connect), and each connection's peer uid
(SO_PEERCRED) must be root or the daemon's own uid. TCP always needs a bearer token,
compared in constant time.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import socketserver
import struct
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from harepl.runtime.api.backend import ApiBackend, BackendUnavailable
from harepl.runtime.api.errors import ApiError
from harepl.runtime.api.routes import Request, dispatch
from harepl.runtime.config import unix_socket_state
from harepl.runtime.metrics import HaMetrics

log = logging.getLogger("harepl.api")

MAX_BODY_BYTES = 1 << 20
REQUEST_TIMEOUT_S = 10.0


class _Handler(BaseHTTPRequestHandler):
    server_version = "harepl-api/1"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S
    # a garbage request line is otherwise answered as HTTP/0.9: a body with no status line
    default_request_version = "HTTP/1.0"
    # set on the subclass made per server
    backend: ApiBackend
    metrics: HaMetrics
    token: str | None = None

    # --- plumbing -----------------------------------------------------------------------
    def address_string(self) -> str:
        addr = self.client_address
        return addr[0] if isinstance(addr, tuple) and addr else "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # the stdlib's own errors (malformed request line, bad headers...) as one JSON line too
        self._send_json(code, {"error": message or self.responses.get(code, ("error",))[0]})

    def _send_body(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, code: int, data: Any) -> None:
        self._send_body(code, (json.dumps(data, sort_keys=True) + "\n").encode(), "application/json")

    def _authorized(self) -> bool:
        if self.token is None:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    def _read_body(self) -> Any:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if self.headers.get("Transfer-Encoding"):
                raise ApiError(411, "send the body with a Content-Length (no chunked encoding)")
            return None
        try:
            length = int(length_text)
        except ValueError:
            raise ApiError(400, f"invalid Content-Length {length_text!r}") from None
        if length < 0:
            raise ApiError(400, f"invalid Content-Length {length_text!r}")
        if length > MAX_BODY_BYTES:
            raise ApiError(413, f"request body too large ({length} bytes, limit {MAX_BODY_BYTES})")
        raw = self.rfile.read(length)
        if len(raw) != length:
            raise ApiError(400, "request body shorter than its Content-Length")
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"invalid JSON body: {exc}") from None

    # --- one request ------------------------------------------------------------------------
    def _handle(self) -> None:
        try:
            if not self._authorized():
                raise ApiError(401, "missing or wrong API token (Authorization: Bearer TOKEN)")
            url = urlsplit(self.path)
            path = url.path.rstrip("/") or "/"
            if path == "/metrics":
                if self.command not in ("GET", "HEAD"):
                    raise ApiError(405, f"method {self.command} not allowed on /metrics (allowed: GET)")
                text, content_type = self._metrics()
                self._send_body(200, text, content_type)
                return
            try:
                query = dict(parse_qsl(url.query, keep_blank_values=True, strict_parsing=bool(url.query)))
            except ValueError:
                raise ApiError(400, f"invalid query string {url.query!r}") from None
            body = self._read_body() if self.command in ("POST", "PUT", "DELETE") else None
            if body is None and self.command in ("POST", "PUT"):
                body = {}
            req = Request(backend=self.backend, params={}, query=query, body=body)
            data = dispatch(req, self.command, path)
            self._send_json(200, data)
        except ApiError as exc:
            self._send_json(exc.status, {"error": exc.message})
        except BackendUnavailable as exc:
            self._send_json(503, {"error": " ".join(str(exc).split()) or "backend unavailable"})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        except Exception as exc:  # never a traceback to the client; full one in the log
            log.exception("API request %s %s failed", self.command, self.path)
            self._send_json(500, {"error": f"internal error: {type(exc).__name__}: "
                                           f"{' '.join(str(exc).split())}"})

    def _metrics(self) -> tuple[bytes, str]:
        try:
            state = self.backend.read_state()
        except BackendUnavailable:
            state = None
        return self.metrics.render(state)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def server_bind(self) -> None:
        path = str(self.server_address)
        _clear_stale_socket(path)
        # bind in a private directory, chmod, then rename: never reachable with a wider mode
        parent = os.path.dirname(os.path.abspath(path))
        private = tempfile.mkdtemp(prefix=".harepl-api-", dir=parent)
        try:
            tmp_path = os.path.join(private, "s")
            self.socket.bind(tmp_path)
            os.chmod(tmp_path, 0o600)
            os.rename(tmp_path, path)
        finally:
            try:
                os.rmdir(private)
            except OSError:
                pass
        self.server_address = path

    def verify_request(self, request: Any, client_address: Any) -> bool:
        uid = _peer_uid(request)
        allowed = uid is not None and uid in (0, os.geteuid())
        if not allowed:
            log.warning("API: refused a Unix-socket peer with uid %s", uid)
        return allowed


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


def _clear_stale_socket(path: str) -> None:
    """Remove a socket left by a dead daemon; refuse to steal a live one or a non-socket."""
    state = unix_socket_state(path)
    if state == "not a socket":
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    if state == "stale":
        os.unlink(path)
    elif state == "served":
        raise OSError(f"another process is already serving on {path}")


class ApiHandle:
    """What serve_api returns: the bound addresses and close()."""

    def __init__(self, servers: list[socketserver.BaseServer], unix_path: str | None,
                 metrics: HaMetrics) -> None:
        self._servers = servers
        self._threads: list[threading.Thread] = []
        self.unix_path = unix_path
        self.metrics = metrics
        self.tcp_address: tuple[str, int] | None = None
        for server in servers:
            if isinstance(server, _TcpServer):
                host, port = server.server_address[:2]
                self.tcp_address = (str(host), int(port))
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name=f"harepl-api-{type(server).__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5.0)
        if self.unix_path:
            try:
                os.unlink(self.unix_path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> ApiHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_api(backend: ApiBackend, unix_path: str | os.PathLike[str] | None = None,
              tcp: tuple[str, int] | None = None, token: str | None = None,
              metrics: HaMetrics | None = None) -> ApiHandle:
    """Start serving in background threads; see harepl.runtime.api's docstring."""
    if unix_path is None and tcp is None:
        raise ValueError("serve_api needs unix_path, tcp, or both")
    if tcp is not None and not token:
        raise ValueError("the TCP API needs a token (it is never open without one)")
    metrics = metrics if metrics is not None else HaMetrics()
    servers: list[socketserver.BaseServer] = []
    try:
        if unix_path is not None:
            handler = type("UnixHandler", (_Handler,), {"backend": backend, "metrics": metrics, "token": None})
            servers.append(_UnixServer(os.fspath(unix_path), handler))
        if tcp is not None:
            handler = type("TcpHandler", (_Handler,), {"backend": backend, "metrics": metrics, "token": token})
            servers.append(_TcpServer(tcp, handler))
    except BaseException:
        for server in servers:
            server.server_close()
        if unix_path is not None and servers:
            try:
                os.unlink(os.fspath(unix_path))
            except FileNotFoundError:
                pass
        raise
    return ApiHandle(servers, os.fspath(unix_path) if unix_path is not None else None, metrics)
