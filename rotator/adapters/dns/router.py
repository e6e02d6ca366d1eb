"""The backend of each zone: `[[dns.backends]]` name the zones they serve by suffix (the
longest suffix wins); every other zone goes to the `[dns]` primary, if there is one."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ...domain.errors import PublishError
from ...domain.reasons import Reason
from ...ports import Publisher, ZoneChanges


@dataclass(frozen=True)
class Route:
    name: str  # the backend's name in the config, for messages
    suffixes: tuple[str, ...]  # lower case, no trailing dot
    backend: Publisher


def covers(suffix: str, zone: str) -> bool:
    return zone == suffix or zone.endswith("." + suffix)


class ZoneRouter:
    def __init__(self, routes: Sequence[Route], default: Publisher | None) -> None:
        self.routes = list(routes)
        self.default = default
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(self.routes) + 1), thread_name_prefix="backend"
        )

    def route(self, zone: str) -> Route | None:
        """The backend serving `zone`: the longest matching suffix, else the default."""
        zone = zone.rstrip(".").lower()
        best: Route | None = None
        best_len = -1
        for route in self.routes:
            for suffix in route.suffixes:
                if covers(suffix, zone) and len(suffix) > best_len:
                    best, best_len = route, len(suffix)
        if best is None and self.default is not None:
            return Route("[dns] primary", (), self.default)
        return best

    def publish(self, batch: Sequence[ZoneChanges]) -> list[str | PublishError]:
        results: list[str | PublishError | None] = [None] * len(batch)
        groups: dict[int, tuple[Publisher, list[int]]] = {}
        for i, (zone, _) in enumerate(batch):
            route = self.route(zone)
            if route is None:
                results[i] = PublishError(_unserved(zone), Reason.DNS_NO_BACKEND)
                continue
            groups.setdefault(id(route.backend), (route.backend, []))[1].append(i)

        def run(backend: Publisher, indexes: list[int]) -> None:
            for i, result in zip(
                indexes, backend.publish([batch[i] for i in indexes]), strict=True
            ):
                results[i] = result

        if len(groups) == 1:
            run(*next(iter(groups.values())))
        else:  # backends side by side: a slow provider API holds up no other backend
            for future in [self._pool.submit(run, b, ix) for b, ix in groups.values()]:
                future.result()
        return [r if r is not None else PublishError("no result") for r in results]

    def serves(self, zone: str) -> bool:
        return self.route(zone) is not None

    def in_rounds(self, zone: str) -> bool:
        route = self.route(zone)
        return route is not None and route.backend.in_rounds(zone)

    def zone_problem(self, zone: str) -> str | None:
        route = self.route(zone)
        if route is None:
            return _unserved(zone)
        try:
            problem = route.backend.zone_problem(zone)
        except PublishError as exc:
            if not self.routes:
                raise
            raise PublishError(f"DNS backend {route.name}: {exc.reason}", exc.code) from None
        if problem is None or not self.routes:
            return problem
        return f"DNS backend {route.name}: {problem}"


def _unserved(zone: str) -> str:
    return (
        f"no DNS backend serves zone {zone.rstrip('.')}: add it to the zones of a "
        "[[dns.backends]] entry, or set [dns] primary"
    )
