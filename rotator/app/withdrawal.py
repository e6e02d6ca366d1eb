"""Taking keys out of every signer target, then recording why: the one path of an
emergency and of a customer leaving. Both run under the signer lock, so that an activation
in the daemon waits and then sees what was recorded."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from ..domain import events as ev
from ..domain.errors import RotatorError, SignerLockBusy
from ..domain.model import IdentityState, KeyState
from ..ports import TargetResult
from .context import Context
from .signing import Signing


@dataclass(frozen=True)
class Withdrawn:
    """What a withdrawal did to the signers."""

    targets: tuple[TargetResult, ...] = ()  # each signer target: rewritten without the keys?

    @property
    def signer_error(self) -> str | None:
        """The targets still holding the keys, and why; None when every one let go."""
        failed = [f"{r.target}: {r.detail}" for r in self.targets if not r.ok]
        return "; ".join(failed) or None


# what a failed recording says, given what the signers did and the store's error
Unrecorded = Callable[[Withdrawn, RotatorError], str]


class Withdrawal:
    def __init__(self, ctx: Context, signing: Signing) -> None:
        self.ctx = ctx
        self.signing = signing

    def run(
        self,
        keys: Sequence[KeyState],
        events: Sequence[ev.Event],
        basis: Iterable[KeyState | IdentityState],
        *,
        wipe: bool,
        unsigned: Collection[str] = (),
        busy: str = "",
        unrecorded: Unrecorded | None = None,
    ) -> Withdrawn:
        """Under the signer lock: the stamp cleared (a write is under way), every target
        rewritten without `keys` (and without the ESP signatures for the patterns
        `unsigned`), `events` recorded, and the stamp set again if every target let go.

        `wipe`: the keys' copies go at once (a compromise), not after the targets' grace.
        A target that cannot be rewritten never stops the recording. `busy` prefixes the
        error of a lock that stays taken; `unrecorded` words a recording that fails after
        the targets were rewritten (else the store's error goes up as it is)."""
        gone = {k.key_id for k in keys}
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self.ctx.signer.locked())
            except SignerLockBusy as exc:
                if not busy:
                    raise
                raise SignerLockBusy(f"{busy}: {exc.reason}") from None
            self.ctx.signer.stamp(None)
            # only the removal: tables without the keys, no key file sent
            keep = self.signing.signing_set(gone=gone, unsigned=unsigned)
            leaving = self.signing.leaving(keys)
            out = Withdrawn(tuple(self.ctx.signer.withdraw(leaving, keep, wipe=wipe)))
            try:
                self.ctx.recorder.append(events, basis)
            except RotatorError as exc:
                if unrecorded is None:
                    raise
                raise RotatorError(unrecorded(out, exc)) from None
            if out.signer_error is None:
                self.signing.stamp()
        return out
