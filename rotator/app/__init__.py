"""Use cases, one module per capability, wired together over one Context. Everything that
appends events goes through recording.Recorder."""

from __future__ import annotations

from .batched_onboarding import BatchedOnboarding
from .batched_onboarding import Request as OnboardingRequest
from .changes import Changes
from .context import Context
from .customer_dns import CustomerDns
from .emergency import Declared, Emergency, EmergencyPlan, Scope
from .emergency_followup import EmergencyFollowUp, FollowUp
from .generation import Generation
from .keyimport import KeyImport
from .keypool import KeyPoolKeeper
from .lifecycle import Lifecycle
from .offboarding import Offboarding
from .onboarding import CustomerRow, Onboarding
from .publishing import Publishing
from .queries import Queries
from .recording import TickReport
from .rotation import Rotation
from .safety import Safety
from .signing import Signing
from .tokens import SCOPES, Token, Tokens
from .verifying import Verifying
from .watch import Watch
from .webhook_delivery import CourierStats, Deliveries, DeliverySettings
from .webhooks import Subscription, Webhooks
from .withdrawal import Withdrawal, Withdrawn

__all__ = [
    "SCOPES",
    "Application",
    "Context",
    "CourierStats",
    "CustomerRow",
    "Declared",
    "Deliveries",
    "DeliverySettings",
    "EmergencyPlan",
    "FollowUp",
    "OnboardingRequest",
    "Scope",
    "Subscription",
    "TickReport",
    "Token",
    "Tokens",
    "Withdrawn",
]


class Application:
    """Every capability over one Context: what the CLI, the daemon and the tests use."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.customer_dns = CustomerDns(ctx)
        self.onboarding = Onboarding(ctx, self.customer_dns)
        self.batched_onboarding = BatchedOnboarding(self.onboarding)
        self.keyimport = KeyImport(ctx)
        self.rotation = Rotation(ctx)
        self.generation = Generation(ctx)
        self.signing = Signing(ctx)
        self.safety = Safety(ctx)
        self.lifecycle = Lifecycle(
            ctx,
            self.generation,
            Publishing(ctx),
            Verifying(ctx, self.customer_dns),
            self.signing,
            Watch(ctx),
            self.safety,
        )
        self.keypool = KeyPoolKeeper(ctx)
        self.withdrawal = Withdrawal(ctx, self.signing)
        self.emergency = Emergency(ctx, self.withdrawal, self.keypool)
        self.emergency_followup = EmergencyFollowUp(ctx, self.lifecycle, self.signing)
        self.queries = Queries(ctx.store)
        self.offboarding = Offboarding(ctx, self.withdrawal, self.customer_dns)
        self.changes = Changes(ctx, self.customer_dns, self.onboarding, self.offboarding)
        self.tokens = Tokens(ctx)
        self.webhooks = Webhooks(ctx, ctx.webhook_vault)
