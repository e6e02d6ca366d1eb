"""The API on a real uvicorn server on 127.0.0.1 (a free port), in a thread: started,
waited for (bounded) and stopped by the caller's `with`."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn

from rotator.api.app import create_app
from rotator.api.state import ApiState
from rotator.bootstrap import App


@contextlib.contextmanager
def serving(app: App, wake: Callable[[bool], None] | None = None) -> Iterator[str]:
    """Serve `app` until the block ends; yields the base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(ApiState(app, wake)), host="127.0.0.1", port=port,
                       log_config=None, access_log=False)
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
