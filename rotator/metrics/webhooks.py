"""Webhook delivery metrics, read at scrape time from the daemon's couriers: POSTs made,
acknowledged and failed, parked subscriptions, and how far each one is behind the log.

Subscriptions are labelled by their id (whk_...), never by their URL, whose path or query
may hold a receiver's own secret; the signing secret is never read here."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..app import CourierStats

LABELS = ["subscription"]


class WebhookCollector:
    """`stats`: the couriers' numbers now; `head`: the log's last position, None when the
    database cannot be read (the lag is left out then)."""

    def __init__(
        self, stats: Callable[[], Sequence[CourierStats]], head: Callable[[], int | None]
    ) -> None:
        self.stats = stats
        self.head = head

    def collect(self) -> Iterator[Metric]:
        stats = sorted(self.stats(), key=lambda s: s.subscription)
        # each family beside the CourierStats field it counts; the names spelled out, as
        # the documentation's reference reads them from these calls
        counters = (
            (CounterMetricFamily("rotator_webhook_deliveries_attempted",
                                 "Webhook POSTs made, retries included", labels=LABELS),
             "attempted"),
            (CounterMetricFamily("rotator_webhook_deliveries_succeeded",
                                 "Webhook POSTs a receiver answered with a 2xx", labels=LABELS),
             "succeeded"),
            (CounterMetricFamily("rotator_webhook_deliveries_failed",
                                 "Webhook POSTs that got no 2xx (an error status, a timeout, "
                                 "refused)", labels=LABELS),
             "failed"),
        )  # fmt: skip
        for family, field in counters:
            for s in stats:
                family.add_metric([s.subscription], getattr(s, field))
            yield family
        parked = GaugeMetricFamily(
            "rotator_webhooks_parked",
            "Webhook subscriptions parked until `rotator webhook resume`",
        )
        parked.add_metric([], sum(1 for s in stats if s.parked))
        yield parked
        head = self.head()
        if head is None:
            return
        lag = GaugeMetricFamily(
            "rotator_webhook_lag_events",
            "Log events after the position a subscription's deliveries reached",
            labels=LABELS,
        )
        for s in stats:
            lag.add_metric([s.subscription], max(0, head - s.reached))
        yield lag
