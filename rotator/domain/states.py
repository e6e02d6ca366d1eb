"""Key lifecycle states (see README: state diagram and what each state promises)."""

from enum import StrEnum


class State(StrEnum):
    GENERATED = "generated"
    PUBLISHED = "published"
    VERIFIED = "verified"
    ACTIVE = "active"
    DRAINING = "draining"
    REVOKED = "revoked"
    DESTROYED = "destroyed"


# Keys in these states may still be promoted to active for their identity.
PENDING = frozenset({State.GENERATED, State.PUBLISHED, State.VERIFIED})
# Keys whose public key must still be served (mail signed with them may be in flight).
SERVING = frozenset({State.PUBLISHED, State.VERIFIED, State.ACTIVE, State.DRAINING})


class Mode(StrEnum):
    """How an identity's DKIM records reach the verifiers (see README: ESP setups)."""

    NS_DELEGATION = "ns-delegation"  # customer delegates <esp>._domainkey.<domain> to the ESP
    THIRD_PARTY = "third-party"  # a domain the ESP controls signs the customer's mail
    CNAME = "cname"  # customer pre-creates CNAMEs for the next N selectors
    PING_PONG = "ping-pong"  # 2-3 fixed CNAME slots, alternated
    CUSTOMER_KEY = "customer-key"  # customer generates and publishes; ESP only signs


class Role(StrEnum):
    CUSTOMER = "customer"  # d= is (or stands in for) the customer's domain
    ESP = "esp"  # the ESP's own domain: the second, feedback-loop signature


class Action(StrEnum):
    """The next side effect the daemon owes a key (or an identity)."""

    PUBLISH = "publish"
    VERIFY = "verify"
    ACTIVATE = "activate"
    REVOKE = "revoke"  # publish the empty-p= record
    VERIFY_REVOCATION = "verify-revocation"
    DESTROY = "destroy"
    REMOVE_TOMBSTONE = "remove-tombstone"
