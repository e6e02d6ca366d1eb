"""Verifications handed straight to activation. A key whose records every server serves and
whose activation is due at once goes from the verification step into the signer, and its
KeyVerified is recorded in the same append as its KeyActivated: one transaction on the way
to active instead of two, with the log's order unchanged (KeyVerified, then KeyActivated).
The signer is written before either is recorded; a crash between the two leaves the key
published, and the restart rewrites the signer from the log (without it) and verifies it
again. A key that is not activated now gets its KeyVerified recorded alone, before any
failure of its activation, just as if the two steps had run apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..domain import events as ev
from ..domain.model import IdentityState, KeyState, apply_key
from ..domain.states import Action, State
from .recording import Recorder, TickReport


class Ahead:
    def __init__(
        self,
        recorder: Recorder,
        report: TickReport,
        events: Mapping[str, ev.KeyVerified],
        keys: Sequence[KeyState],
    ) -> None:
        """`events`: the KeyVerified of those of `keys` verified just now, by key_id."""
        self.recorder, self.report = recorder, report
        self.events = dict(events)
        # the state each verification decided from
        self.published = {k.key_id: k for k in keys if k.key_id in self.events}

    def states(self, keys: Sequence[KeyState], fresh: Mapping[str, KeyState]) -> list[KeyState]:
        """The keys that may be activated: those verified in the log, and those verified
        just now (their state as their KeyVerified makes it) that did not move since."""
        out = []
        for key in keys:
            state = fresh.get(key.key_id)
            if state is None:
                continue
            event = self.events.get(key.key_id)
            if event is not None:
                if state.state is not State.PUBLISHED or state.version != key.version:
                    del self.events[key.key_id]  # moved since its look: the next tick decides
                    continue
                state = apply_key(state, event)
            if state.state is State.VERIFIED:
                out.append(state)
        return out

    def record(self, keys: Sequence[KeyState]) -> list[KeyState]:
        """Record the verification of those of `keys` verified just now (they are not
        activated now); the keys whose verification is in the log, for their failure to
        be recorded after it."""
        todo = [k for k in keys if k.key_id in self.events]
        if todo:
            events = [self.events.pop(k.key_id) for k in todo]
            basis = [self.published[k.key_id] for k in todo]
            if not self.recorder.outcomes(
                events, basis, self.report, Action.VERIFY, split_on_conflict=True
            ):
                moved = {k.key_id for k in todo}  # which ones landed is not known: none fail
                return [k for k in keys if k.key_id not in moved]
        return list(keys)

    def rest(self) -> None:
        """Record the verifications no activation took."""
        self.record([self.published[k] for k in list(self.events)])

    def joined(
        self, key: KeyState, events: list[ev.Event], basis: list[KeyState | IdentityState]
    ) -> tuple[list[ev.Event], list[KeyState | IdentityState]]:
        """A key's activation events, behind its KeyVerified if that is not recorded yet,
        and checked against the state its verification decided from."""
        verified = self.events.pop(key.key_id, None)
        if verified is None:
            return events, basis
        published = self.published[key.key_id]
        return [verified, *events], [published if b is key else b for b in basis]

    def verified_with(self, batches: Sequence[tuple[list[ev.Event], object]]) -> None:
        """Count the verifications recorded with these activations."""
        n = sum(isinstance(e, ev.KeyVerified) for events, _ in batches for e in events)
        self.report.succeeded += n
        self.report.by_action[Action.VERIFY.value] += n
