"""uvicorn in a thread beside the scheduler: started with the daemon, stopped with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
import uvicorn

from ..bootstrap import App, build
from ..config.api import ApiConfig
from ..config.settings import Config
from ..domain.errors import ConfigError
from .app import create_app
from .state import ApiState

log = structlog.get_logger("rotator")
START_S = 10.0  # how long the port may take to be bound
STOP_S = 10.0  # requests in flight get this long to finish


class ApiServer:
    def __init__(self, config: Config, wake: Callable[[bool], None]) -> None:
        self.config: ApiConfig = config.api
        # its own App: its own connection to the log, its events' origin "api"
        self.app: App = build(config, command=False, via="api")
        settings = uvicorn.Config(
            create_app(ApiState(self.app, wake)),
            host=self.config.host,
            port=self.config.port,
            ssl_certfile=str(self.config.tls_cert) if self.config.tls_cert else None,
            ssl_keyfile=str(self.config.tls_key) if self.config.tls_key else None,
            log_config=None,  # structlog's handlers; and no access log (it would show paths)
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=int(STOP_S),
        )
        self.server = uvicorn.Server(settings)
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.app.close()
                raise ConfigError(
                    f"[api] listen {self.config.listen}: could not serve there (in use, or "
                    "not an address of this host); see the log line above"
                )
            time.sleep(0.05)
        log.info("api_serving", listen=self.config.url)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_S + 5)
        self.app.close()
