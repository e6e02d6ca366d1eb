"""Small Protocols the application service talks to; adapters/ implement them. One module
per concept, every name re-exported here."""

from __future__ import annotations

from ..domain.verification import DelegationView as DelegationView
from ..domain.verification import Observation as Observation  # re-exported for adapters
from .dns import NameserverProbe as NameserverProbe
from .dns import Publisher as Publisher
from .dns import RecordChange as RecordChange
from .dns import ZoneChanges as ZoneChanges
from .dns import apply_zone as apply_zone
from .keys import GeneratedKey as GeneratedKey
from .keys import KeyPool as KeyPool
from .keys import KeyStore as KeyStore
from .keys import Materialized as Materialized
from .keys import SealedKeys as SealedKeys
from .leadership import Fencing as Fencing
from .leadership import Leader as Leader
from .leadership import Leadership as Leadership
from .leadership import LeaderWork as LeaderWork
from .leadership import Lease as Lease
from .leadership import Unfenced as Unfenced
from .monitoring import StoreCounts as StoreCounts
from .runtime import Clock as Clock
from .runtime import DaemonLock as DaemonLock
from .runtime import PolicySource as PolicySource
from .runtime import Workers as Workers
from .signing import SIGNING_KEY_COLUMNS as SIGNING_KEY_COLUMNS
from .signing import ListRows as ListRows
from .signing import RowBuffer as RowBuffer
from .signing import Signer as Signer
from .signing import SignerChange as SignerChange
from .signing import SigningEntry as SigningEntry
from .signing import SigningRow as SigningRow
from .signing import SigningStream as SigningStream
from .signing import TargetResult as TargetResult
from .signing import sender_order as sender_order
from .signing import signing_row as signing_row
from .store import DUE_BATCH as DUE_BATCH
from .store import Appended as Appended
from .store import AuditLog as AuditLog
from .store import AuditReport as AuditReport
from .store import EventAppender as EventAppender
from .store import EventStore as EventStore
from .store import LogFilter as LogFilter
from .store import OverviewCounts as OverviewCounts
from .store import OverviewReader as OverviewReader
from .store import ProjectionReader as ProjectionReader
from .store import SigningSetSource as SigningSetSource
from .store import StoreCounter as StoreCounter
from .store import StoredEvent as StoredEvent
from .store import StreamReader as StreamReader
from .webhooks import DeliveryError as DeliveryError
from .webhooks import SecretUnreadable as SecretUnreadable
from .webhooks import WebhookSender as WebhookSender
from .webhooks import WebhookVault as WebhookVault
