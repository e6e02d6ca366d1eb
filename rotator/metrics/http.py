"""The HTTP side of [metrics]: /metrics (prometheus_client's own WSGI app), /healthz and
/readyz, served by wsgiref in a daemon thread, one thread per connection, a bounded number
of connections each for a bounded time."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from ..domain.errors import ConfigError

# Not ready when no tick finished for this many tick intervals (and at least MIN_STALE_S:
# one tick that generates a batch of RSA keys takes longer than a short test interval).
STALE_TICKS = 3
MIN_STALE_S = 60.0


class Health:
    """What /readyz answers: start-up convergence done, and the last tick ran to its end,
    recently; or this node is a standby (another leads), ready to take over. The tick
    thread reports; request threads read."""

    def __init__(self, tick_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.tick_seconds = tick_seconds
        self.window = max(STALE_TICKS * tick_seconds, MIN_STALE_S)
        self.clock = clock
        self._lock = threading.Lock()
        self._started = False
        self._finished: float | None = None
        self._error = ""
        self._standby = False

    def converging(self) -> None:
        """This node took the lease: not ready until it converged and ticked."""
        with self._lock:
            self._started, self._finished, self._error, self._standby = False, None, "", False

    def startup_done(self) -> None:
        with self._lock:
            self._started = True

    def standby(self) -> None:
        with self._lock:
            self._started, self._finished, self._error, self._standby = False, None, "", True

    def tick_finished(self, error: str = "") -> None:
        """A tick ended: ran to its end (no error), or stopped on `error`."""
        line = error.splitlines()[0] if error else ""
        with self._lock:
            self._finished = self.clock()
            self._error = line[:300] or ("failed" if error else "")

    def readiness(self) -> tuple[bool, str]:
        """(ready, the reason in one line)."""
        with self._lock:
            started, finished, error = self._started, self._finished, self._error
            if self._standby:
                return True, "standby: another node leads; this one takes over if it stops"
        if not started:
            return False, "starting: start-up convergence is not done yet"
        if finished is None:
            return False, "started: waiting for the first tick to finish"
        age = self.clock() - finished
        if age > self.window:
            return False, (
                f"no tick finished for {age:.0f}s (ticks every {self.tick_seconds:g}s; "
                f"not ready after {self.window:g}s): a tick is stuck or the scheduler stopped"
            )
        if error:
            return False, f"the last tick failed: {error}"
        return True, f"ready: the last tick finished {age:.1f}s ago"


def _reply(
    start_response: StartResponse,
    status: str,
    text: str,
    extra: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    body = text.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, [*headers, *extra])
    return [body]


def wsgi_app(registry: CollectorRegistry, health: Health) -> WSGIApplication:
    """/metrics from the registry; /healthz: the process is up; /readyz: see Health."""
    metrics: Callable[..., Iterable[bytes]] = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return metrics(environ, start_response)
        if environ.get("REQUEST_METHOD") != "GET":
            return _reply(start_response, "405 Method Not Allowed", "use GET\n", [("Allow", "GET")])
        if path == "/healthz":
            return _reply(start_response, "200 OK", "ok: the daemon is up\n")
        if path == "/readyz":
            ok, why = health.readiness()
            return _reply(start_response, "200 OK" if ok else "503 Service Unavailable", why + "\n")
        return _reply(start_response, "404 Not Found", "not here: /metrics, /healthz, /readyz\n")

    return app


# What one scraper (or anyone who can connect) may hold of the daemon: a few connections,
# each for a few seconds. A client that sends its request slowly, or never, is cut off at
# the deadline; a connection past the cap is closed at once, before it has a thread.
MAX_CONNECTIONS = 16
DEADLINE_S = 10.0


class _Quiet(WSGIRequestHandler):
    timeout = DEADLINE_S  # each read and write; the whole connection: _Bounded

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: a scrape every few seconds would flood the daemon's log."""


class _Bounded(ThreadingWSGIServer):
    """prometheus_client's threading server with a cap on connections and a deadline on
    each one, so that held or half-sent requests cannot use up the daemon's threads and
    file descriptors (a step that cannot open its files fails)."""

    max_connections = MAX_CONNECTIONS
    deadline = DEADLINE_S

    def server_activate(self) -> None:
        self.slots = threading.BoundedSemaphore(self.max_connections)
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # shutdown() ends a read that is waiting, wherever the handler is
        cut = threading.Timer(self.deadline, _cut_off, [request])
        cut.daemon = True
        cut.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            cut.cancel()
            self.slots.release()


def _cut_off(request: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        request.shutdown(socket.SHUT_RDWR)


class MetricsServer:
    """A bounded threading wsgiref server on `host:port` in a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        app: WSGIApplication,
        max_connections: int = MAX_CONNECTIONS,
        deadline: float = DEADLINE_S,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.app = app
        self.limits = {"max_connections": max_connections, "deadline": deadline}
        self.httpd: _Bounded | None = None
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound (the one asked for, or the one the kernel chose for 0)."""
        assert self.httpd is not None
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        where = f"{self.host}:{self.requested_port}"
        try:
            # the family of the address (IPv6 for ::1), as prometheus_client does it
            family, _, _, _, sockaddr = socket.getaddrinfo(
                self.host, self.requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            server = type("Server", (_Bounded,), {"address_family": family, **self.limits})
            self.httpd = make_server(
                str(sockaddr[0]), self.requested_port, self.app, server, handler_class=_Quiet
            )
        except OSError as exc:
            raise ConfigError(
                f"metrics.listen {where}: cannot listen there: {exc.strerror or exc}; choose "
                "a free port on an address of this host, or remove [metrics] listen"
            ) from None
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="rotator-metrics", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        httpd, self.httpd = self.httpd, None
        if httpd is None:
            return
        httpd.shutdown()  # waits for serve_forever to return
        httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
