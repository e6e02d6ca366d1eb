"""DNS writes of the lifecycle, batched per zone: publish a key, publish its revocation
(`v=DKIM1; p=`), remove its tombstone. One batch of every zone's changes to the zones'
backends (an UPDATE per zone, several in flight; a rebuilt data file once), then one
transaction for every zone's outcome (a crash before it only means the idempotent changes
are sent again)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from .. import faults
from ..domain import events as ev
from ..domain.errors import ExternalError, InputError, RotatorError
from ..domain.model import IdentityState, KeyState
from ..domain.names import normalize_domain, record_location
from ..domain.reasons import Reason
from ..domain.record import revoked_record
from ..domain.selector import validate_selector
from ..domain.states import Action, Mode
from ..ports import RecordChange
from .context import Context
from .recording import TickReport, key_ids

Pairs = list[tuple[KeyState, RecordChange]]


class Publishing:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _name(self, key: KeyState, idents: dict[str, IdentityState]) -> str:
        """The record name, derived again from the identity's validated domain, zone and
        mode and the key's selector, and required to equal the stored one: a projection
        edited behind rotator's back can never point an UPDATE elsewhere."""
        ident = idents.get(key.identity)
        if ident is None or ident.domain != key.domain or ident.zone != key.zone:
            raise InputError(f"key {key.key_id} does not match its identity's domain and zone")
        via_cname = ident.mode in (Mode.CNAME, Mode.PING_PONG)
        name = record_location(
            validate_selector(key.selector), normalize_domain(key.domain), ident.zone, via_cname
        )
        if name != key.record_name:
            raise InputError(f"stored record name {key.record_name!r} is not {name!r}")
        return name

    def publish(self, keys: list[KeyState], now: datetime, report: TickReport) -> None:
        self._batch(
            keys,
            Action.PUBLISH,
            lambda k, i: RecordChange(self._name(k, i), k.ttl, k.record),
            lambda k, at, server: ev.KeyPublished(**key_ids(k, at), server=server),
            now,
            report,
        )

    def revoke(self, keys: list[KeyState], now: datetime, report: TickReport) -> None:
        text = revoked_record()
        self._batch(
            keys,
            Action.REVOKE,
            lambda k, i: RecordChange(self._name(k, i), k.ttl, text),
            lambda k, at, server: ev.RevocationPublished(
                **key_ids(k, at), server=server, record=text
            ),
            now,
            report,
        )

    def remove_tombstone(self, keys: list[KeyState], now: datetime, report: TickReport) -> None:
        # A ping-pong slot's name is reused: once a newer key owns the name, deleting the
        # RRset would take that key down. The tombstone is gone already (replaced).
        reused = []
        for key in keys:
            newer = [
                k
                for k in self.ctx.store.list_keys(key.identity)
                if k.record_name == key.record_name and k.created_at > key.created_at
            ]
            if newer:
                reused.append(key)
                event = ev.TombstoneRemoved(
                    **key_ids(key, now), server=f"(replaced by {newer[0].selector})"
                )
                self.ctx.recorder.outcomes([event], [key], report, Action.REMOVE_TOMBSTONE)
        keys = [k for k in keys if k not in reused]
        if not keys:
            return
        self._batch(
            keys,
            Action.REMOVE_TOMBSTONE,
            lambda k, i: RecordChange(self._name(k, i), k.ttl, None),
            lambda k, at, server: ev.TombstoneRemoved(**key_ids(k, at), server=server),
            now,
            report,
        )

    def _batch(
        self,
        keys: list[KeyState],
        action: Action,
        change: Callable[[KeyState, dict[str, IdentityState]], RecordChange],
        success: Callable[[KeyState, datetime, str], ev.KeyEvent],
        now: datetime,
        report: TickReport,
    ) -> None:
        by_zone: dict[str, Pairs] = defaultdict(list)
        idents = self.ctx.store.identities_named({k.identity for k in keys})
        for key in keys:
            try:
                by_zone[key.zone].append((key, change(key, idents)))
            except RotatorError as exc:  # this key's data is wrong: it fails alone
                why = f"refusing to publish: {exc}"
                self.ctx.recorder.failed(
                    [key], action, why, report, now, code=Reason.RECORD_INVALID
                )
        events: list[ev.KeyEvent] = []
        done: list[KeyState] = []
        zones = list(by_zone.items())
        for (_, pairs), server in zip(zones, self._apply(zones), strict=True):
            zone_keys = [k for k, _ in pairs]
            if isinstance(server, ExternalError):
                self.ctx.recorder.failed(
                    zone_keys, action, server.reason, report, now, code=server.code
                )
                continue
            faults.point(f"after-dns-{action.value}")
            events += [success(k, now, server) for k in zone_keys]
            done += zone_keys
        self.ctx.recorder.outcomes(events, done, report, action, split_on_conflict=True)

    def _apply(self, zones: list[tuple[str, Pairs]]) -> list[str | ExternalError]:
        """Each zone's changes through the zone's backend (what accepted them, or why not).
        All have finished before anything is recorded."""
        return list(self.ctx.publisher.publish([(z, [c for _, c in pairs]) for z, pairs in zones]))
