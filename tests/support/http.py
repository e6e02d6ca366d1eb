"""A small HTTP client over urllib for the API tests: every answer, errors too, as a
Response; 127.0.0.1 only, every request bounded."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class Client:
    def __init__(self, base: str, timeout: float = 30.0) -> None:
        assert base.startswith(("http://127.0.0.1:", "https://127.0.0.1:")), base
        self.base = base
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Response:
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if json_body is None else json.dumps(json_body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return Response(resp.status, _lower(resp.headers.items()), resp.read().decode())
        except urllib.error.HTTPError as exc:
            with exc:
                return Response(exc.code, _lower(exc.headers.items()), exc.read().decode())

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, json_body={} if json is None else json, **kw)


def _lower(items: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in items}
