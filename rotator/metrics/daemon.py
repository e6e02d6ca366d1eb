"""Prometheus metrics for the daemon ([metrics] in rotator.toml; HTTP in metrics_http.py).

Two sources, one private registry:
- StoreCollector computes gauges at scrape time from the store's aggregates
  (monitoring_counts), on a second, read-only connection: a scrape takes none of the
  daemon's locks and writes nothing.
- TickMetrics (metrics_ticks.py) counts what the tick thread reports: tick outcomes and
  durations, and the failure events appended since the last tick.
- WebhookCollector (webhooks.py) reads the webhook couriers' numbers at scrape time.
- LeaderCollector (leadership.py) says whether this node leads, and since when.

Label values come from fixed sets (states, actions, modes), from the configuration
(policies, signer targets, nameservers) or are capped (LABEL_VALUES_MAX): the number of
series does not grow with the number of identities unless per_identity is asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from ..app import CourierStats, TickReport
from ..bootstrap import App
from ..domain.states import State
from ..ports import EventStore, KeyPool, StoreCounter, StoreCounts
from .http import Health, MetricsServer, wsgi_app
from .leadership import Keeper, LeaderCollector
from .ticks import ACTIONS, TickMetrics
from .webhooks import WebhookCollector

log = structlog.get_logger("rotator")

LIVE_STATES = tuple(s.value for s in State if s is not State.DESTROYED)


class ScrapeStore(StoreCounter, Protocol):
    def head(self) -> tuple[int, str] | None: ...


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class StoreCollector:
    """Gauges read from the store at scrape time. Scrapes run in request threads: one at
    a time on the one read-only connection."""

    def __init__(
        self,
        store: ScrapeStore,
        now: Callable[[], datetime],
        per_identity: bool = False,
        keypool: KeyPool | None = None,
        pool_sizes: Mapping[tuple[str, int], int] | None = None,
        health: Health | None = None,
    ) -> None:
        self.store: ScrapeStore | None = store
        self.now = now
        self.per_identity = per_identity
        self.keypool = keypool
        self.pool_sizes = dict(pool_sizes or {})
        self.health = health
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop reading (a scrape in flight finishes first)."""
        with self._lock:
            self.store = None

    def head(self) -> int | None:
        """The log's last position (what the webhooks' lag is counted from); None if the
        database cannot be read."""
        with self._lock:
            if self.store is None:
                return None
            try:
                top = self.store.head()
            except Exception as exc:  # rotator_store_read_ok says so too
                log.warning("metrics_store_unreadable", error=str(exc))
                return None
        return top[0] if top else 0

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        counts: StoreCounts | None = None
        with self._lock:
            if self.store is not None:
                try:
                    counts = self.store.monitoring_counts(self.per_identity)
                except Exception as exc:  # the tick numbers are still worth serving
                    log.warning("metrics_store_unreadable", error=str(exc))
        ok = _gauge("rotator_store_read_ok", "1 if this scrape could read the database")
        ok.add_metric([], 1 if counts is not None else 0)
        yield ok
        if counts is not None:
            yield from self._store_families(counts, self.now())
        yield from self._pool_families()
        if self.health is not None:
            ready = _gauge("rotator_ready", "1 when /readyz answers 200")
            ready.add_metric([], 1 if self.health.readiness()[0] else 0)
            yield ready
        took = _gauge("rotator_metrics_collect_seconds", "Time this scrape took to collect")
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _store_families(self, counts: StoreCounts, now: datetime) -> Iterator[Metric]:
        keys = _gauge(
            "rotator_keys",
            "Keys by state and policy (destroyed: rotator_keys_destroyed)",
            ("state", "policy"),
        )
        by_state: dict[tuple[str, str], int] = {}
        failing = dict.fromkeys(ACTIONS, 0)
        parked = dict.fromkeys(ACTIONS, 0)
        drift = 0
        oldest: dict[str, datetime] = {}
        for c in counts.keys:
            for state in LIVE_STATES:  # every state of a policy in use, 0 included
                by_state.setdefault((state, c.policy), 0)
            by_state[(c.state, c.policy)] += c.keys
            if c.next_action:
                failing[c.next_action] = failing.get(c.next_action, 0) + c.failing
                parked[c.next_action] = parked.get(c.next_action, 0) + c.parked
            drift += c.drift
            if c.oldest_active is not None and (
                c.policy not in oldest or c.oldest_active < oldest[c.policy]
            ):
                oldest[c.policy] = c.oldest_active
        for (state, policy), n in sorted(by_state.items()):
            keys.add_metric([state, policy], n)
        yield keys
        destroyed = _gauge("rotator_keys_destroyed", "Keys destroyed (private key wiped)")
        destroyed.add_metric([], counts.destroyed)
        yield destroyed
        yield _by_action(
            "rotator_keys_failing",
            "Keys whose next step (action) failed at least once and is being retried",
            failing,
        )
        yield _by_action(
            "rotator_keys_parked",
            "Keys whose next step (action) stopped retrying: `rotator resume` once fixed",
            parked,
        )
        # keys with an open drift finding: the watch's (DriftDetected until DriftResolved),
        # or a last error whose code is drift
        findings = _gauge("rotator_drift_findings", "Keys whose DNS or signer drifted from the log")
        findings.add_metric([], drift)
        yield findings
        age = _gauge(
            "rotator_oldest_active_key_age_seconds",
            "Age of the oldest active key of each policy (since it became active)",
            ("policy",),
        )
        for policy, since in sorted(oldest.items()):
            age.add_metric([policy], max(0.0, (now - since).total_seconds()))
        yield age
        for name, doc, at in (
            (
                "rotator_next_rotation_timestamp_seconds",
                "When the next identity is due to rotate (Unix time)",
                counts.next_rotation,
            ),
            (
                "rotator_next_action_timestamp_seconds",
                "When the next key step is due (Unix time)",
                counts.next_action,
            ),
        ):
            family = _gauge(name, doc)
            if at is not None:
                family.add_metric([], at.timestamp())
            yield family
        yield from _identity_families(counts, now)

    def _pool_families(self) -> Iterator[Metric]:
        if self.keypool is None and not self.pool_sizes:
            return
        have = self.keypool.counts() if self.keypool is not None else {}
        labels = ("algorithm", "bits")
        keys = _gauge("rotator_key_pool_keys", "Pre-generated keys waiting in the pool", labels)
        target = _gauge("rotator_key_pool_target", "Pool size the policies ask for", labels)
        for kind in sorted(set(have) | set(self.pool_sizes)):
            keys.add_metric([kind[0], str(kind[1])], have.get(kind, 0))
            target.add_metric([kind[0], str(kind[1])], self.pool_sizes.get(kind, 0))
        yield keys
        yield target


def _by_action(name: str, doc: str, values: Mapping[str, int]) -> GaugeMetricFamily:
    family = _gauge(name, doc, ("action",))
    for action, n in sorted(values.items()):
        family.add_metric([action], n)
    return family


def _identity_families(counts: StoreCounts, now: datetime) -> Iterator[Metric]:
    labels = ("mode", "role")
    total = _gauge("rotator_identities", "Identities (d= domains, not removed)", labels)
    unsigned = _gauge(
        "rotator_identities_without_active_key", "Identities no key signs for yet", labels
    )
    waiting = _gauge(
        "rotator_identities_awaiting_customer_dns",
        "Identities waiting for the customer's DNS (a CNAME, a delegation, their record)",
        labels,
    )
    broken = _gauge(
        "rotator_identities_customer_dns_broken",
        "Identities whose customer DNS stopped leading to their key after activation",
        labels,
    )
    for c in sorted(counts.identities):
        total.add_metric([c.mode, c.role], c.identities)
        unsigned.add_metric([c.mode, c.role], c.without_active)
        waiting.add_metric([c.mode, c.role], c.awaiting_customer_dns)
        broken.add_metric([c.mode, c.role], c.customer_dns_broken)
    yield from (total, unsigned, waiting, broken)
    if not counts.per_identity:
        return
    labels = ("domain", "policy")
    age = _gauge(
        "rotator_identity_active_key_age_seconds", "Age of each identity's active key", labels
    )
    due = _gauge(
        "rotator_identity_next_rotation_timestamp_seconds",
        "When each identity is due to rotate (Unix time)",
        labels,
    )
    for i in counts.per_identity:
        if i.active_since is not None:
            age.add_metric([i.domain, i.policy], max(0.0, (now - i.active_since).total_seconds()))
        if i.rotation_due_at is not None:
            due.add_metric([i.domain, i.policy], i.rotation_due_at.timestamp())
    yield from (age, due)


class DaemonMetrics:
    """What the daemon feeds (start-up, tick outcomes) and, with [metrics] listen, serves.
    Without it only a few counters are kept in memory: nothing is read or served."""

    def __init__(self, app: App, keeper: Keeper | None = None) -> None:
        self.app = app
        self.config = app.config.metrics
        self.registry = CollectorRegistry()
        self.health = Health(app.config.tick_seconds)
        self.ticks = TickMetrics(self.registry)
        if keeper is not None:
            self.registry.register(LeaderCollector(keeper))
        self.reader: EventStore | None = None
        self.collector: StoreCollector | None = None
        self.webhooks: WebhookCollector | None = None
        self.server: MetricsServer | None = None

    def serve(self) -> None:
        if not self.config.enabled:
            return
        try:
            self.reader = self.app.open_reader()
            self.collector = StoreCollector(
                self.reader,
                self.app.ctx.clock.now,
                self.config.per_identity,
                self.app.ctx.keypool,
                self.app.ctx.pool_sizes,
                self.health,
            )
            self.registry.register(self.collector)
            self.ticks.start_counting(self.app.store)
            self.server = MetricsServer(
                self.config.host, self.config.port, wsgi_app(self.registry, self.health)
            )
            self.server.start()
        except BaseException:
            self.close()
            raise
        log.info(
            "metrics_serving",
            listen=f"http://{self.config.listen}/metrics",
            per_identity=self.config.per_identity,
        )

    def watch_deliveries(self, stats: Callable[[], Sequence[CourierStats]]) -> None:
        """Serve the webhook couriers' numbers too (once they are made, after serve())."""
        if self.collector is None or self.webhooks is not None:
            return
        self.webhooks = WebhookCollector(stats, self.collector.head)
        self.registry.register(self.webhooks)

    def leading(self) -> None:
        """This node took the lease: not ready until it converged and ticked."""
        self.health.converging()

    def started(self) -> None:
        """This node leads and converged: ready once its first tick finished."""
        self.health.startup_done()

    def standby(self) -> None:
        """This node stepped down (or never led): ready, with nothing to tick."""
        self.health.standby()

    def tick_done(self, report: TickReport, seconds: float) -> None:
        self.ticks.tick_done(report, seconds)
        self.health.tick_finished()
        self._scan()

    def tick_failed(self, kind: str, error: str) -> None:
        self.ticks.tick_failed(kind)
        self.health.tick_finished(error or kind)
        self._scan()

    def _scan(self) -> None:
        if self.server is None:
            return
        try:
            self.ticks.scan(self.app.store)
        except Exception as exc:  # counting must never stop the daemon
            log.warning("metrics_scan_failed", error=str(exc))

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.webhooks is not None:
            self.registry.unregister(self.webhooks)
            self.webhooks = None
        if self.collector is not None:
            self.collector.close()
            self.registry.unregister(self.collector)
            self.collector = None
        if self.reader is not None:
            self.reader.close()
            self.reader = None
