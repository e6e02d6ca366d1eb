"""Whether every signer target can sign a sender, asked before it is recorded: a target whose
format cannot sign some senders exactly (KumoMTA's helper: one own signature with d= the
sender, the same ESP signatures on every sender) leaves them out of its tables, so such a
sender is refused here with the reason rather than found unsigned at its first key."""

from __future__ import annotations

from collections.abc import Sequence

from ..domain import events as ev
from ..domain.errors import InputError, RotatorError
from ..domain.model import IdentityState
from ..ports import SigningEntry
from .context import Context

# How many senders already recorded the new ones are compared with (the ESP signatures a
# target puts on every message are those most senders carry): a few, whatever the number
# of identities.
SAMPLE = 5

Sender = IdentityState | ev.IdentityAdded


class _Entries:
    """The signatures identities would make once their keys are active: a stand-in key per
    identity and one per ESP signature (the same for every customer carrying it)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.esp_algorithm: dict[str, str] = {}
        self.entries: dict[tuple[str, str], SigningEntry] = {}

    def add(self, i: Sender) -> None:
        if not i.signing_pattern:  # the ESP's own identity signs beside its customers only
            return
        try:
            algorithm = self.ctx.policy(i.policy).algorithm
        except RotatorError:  # a policy file gone: that sender is no sample
            return
        pattern = i.signing_pattern
        own = SigningEntry(f"new-{i.identity}", i.domain, "new", "", pattern, algorithm)
        self.entries[(pattern, own.key_id)] = own
        if i.esp_identity:
            esp = SigningEntry(
                f"esp-{i.esp_identity}", i.esp_identity, "esp", "", pattern,
                self._esp_algorithm(i.esp_identity), second=True,
            )  # fmt: skip
            self.entries[(pattern, esp.key_id)] = esp

    def _esp_algorithm(self, identity: str) -> str:
        if identity not in self.esp_algorithm:
            esp = self.ctx.store.identity(identity)
            try:
                algorithm = self.ctx.policy(esp.policy).algorithm if esp else ""
            except RotatorError:
                algorithm = ""
            self.esp_algorithm[identity] = algorithm
        return self.esp_algorithm[identity]

    def listed(self) -> list[SigningEntry]:
        return list(self.entries.values())


def check_signable(ctx: Context, added: Sequence[ev.IdentityAdded]) -> None:
    """InputError (one line, naming the target and its limit) if a signer target could
    not sign a sender these identities add or change, beside the senders it signs now."""
    new, beside = _Entries(ctx), _Entries(ctx)
    names = {e.identity for e in added}
    for event in added:
        new.add(event)
        if event.companion_of and event.companion_of not in names:
            primary = ctx.store.identity(event.companion_of)  # it signs the same mail
            if primary is not None:
                new.add(primary)
    patterns = {e.signing_pattern for e in added}
    # a few more: an identity taken over, or a companion's primary, shares a new pattern
    others = [i for i in ctx.store.senders(2 * SAMPLE) if i.signing_pattern not in patterns]
    for ident in others[:SAMPLE]:
        beside.add(ident)
    problems = ctx.signer.problems(new.listed(), beside.listed())
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}")
