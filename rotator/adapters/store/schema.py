"""The event store's schema: one sqlite-utils migration per version, applied at open."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

from ...domain.reasons import legacy_code

migrations = Migrations("rotator")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE events (
            position INTEGER PRIMARY KEY AUTOINCREMENT,
            stream_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            at TEXT NOT NULL,
            type TEXT NOT NULL,
            identity TEXT,
            key_id TEXT,
            domain TEXT,
            selector TEXT,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            payload TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            UNIQUE (stream_id, version)
        );
        CREATE INDEX events_key ON events (key_id);
        CREATE INDEX events_domain ON events (domain);
        CREATE INDEX events_identity ON events (identity);
        CREATE INDEX events_type ON events (type);
        CREATE INDEX events_at ON events (at);
        CREATE TRIGGER events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
        CREATE TRIGGER events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

        CREATE TABLE keys (
            key_id TEXT PRIMARY KEY,
            identity TEXT NOT NULL,
            domain TEXT NOT NULL,
            selector TEXT NOT NULL,
            policy TEXT NOT NULL,
            algorithm TEXT NOT NULL,
            bits INTEGER NOT NULL,
            fingerprint TEXT NOT NULL,
            zone TEXT NOT NULL,
            record_name TEXT NOT NULL,
            record TEXT NOT NULL,
            ttl INTEGER NOT NULL,
            state TEXT NOT NULL,
            since TEXT NOT NULL,
            created_at TEXT NOT NULL,
            version INTEGER NOT NULL,
            next_action TEXT,
            next_action_at TEXT,
            attempts INTEGER NOT NULL,
            last_error TEXT,
            replaces TEXT,
            successor TEXT,
            revocation_published INTEGER NOT NULL,
            tombstone_removed INTEGER NOT NULL,
            activated_at TEXT,
            drain_until TEXT
        );
        CREATE UNIQUE INDEX keys_domain_selector ON keys (domain, selector);
        CREATE INDEX keys_identity ON keys (identity);
        CREATE INDEX keys_state ON keys (state);
        CREATE INDEX keys_due ON keys (next_action_at) WHERE next_action_at IS NOT NULL;

        CREATE TABLE identities (
            identity TEXT PRIMARY KEY,
            domain TEXT NOT NULL,
            zone TEXT NOT NULL,
            policy TEXT NOT NULL,
            signing_pattern TEXT NOT NULL,
            created_at TEXT NOT NULL,
            version INTEGER NOT NULL,
            active_key TEXT,
            pending_key TEXT,
            rotation_due_at TEXT
        );
        CREATE INDEX identities_due ON identities (rotation_due_at)
            WHERE rotation_due_at IS NOT NULL;
        """
    )


@migrations()
def m002_tenancy(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        ALTER TABLE identities ADD COLUMN customer TEXT NOT NULL DEFAULT '';
        ALTER TABLE identities ADD COLUMN mode TEXT NOT NULL DEFAULT 'third-party';
        ALTER TABLE identities ADD COLUMN role TEXT NOT NULL DEFAULT 'customer';
        ALTER TABLE identities ADD COLUMN esp_identity TEXT NOT NULL DEFAULT '';
        CREATE INDEX identities_customer ON identities (customer);
        """
    )


@migrations()
def m003_modes(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        ALTER TABLE keys ADD COLUMN lookup_name TEXT NOT NULL DEFAULT '';
        ALTER TABLE keys ADD COLUMN customer_managed INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE identities ADD COLUMN notice TEXT NOT NULL DEFAULT '';
        -- ping-pong slots reuse a selector once its previous key is revoked
        DROP INDEX keys_domain_selector;
        CREATE UNIQUE INDEX keys_domain_selector ON keys (domain, selector)
            WHERE state NOT IN ('revoked', 'destroyed');
        """
    )


@migrations()
def m004_emergency(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        ALTER TABLE keys ADD COLUMN compromised INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE identities ADD COLUMN rotate_at TEXT;
        ALTER TABLE keys ADD COLUMN emergency_actor TEXT NOT NULL DEFAULT '';
        ALTER TABLE keys ADD COLUMN emergency_reason TEXT NOT NULL DEFAULT '';
        ALTER TABLE identities ADD COLUMN emergency_actor TEXT NOT NULL DEFAULT '';
        ALTER TABLE identities ADD COLUMN emergency_reason TEXT NOT NULL DEFAULT '';
        """
    )


@migrations()
def m005_owners_and_requests(db: sqlite_utils.Database) -> None:
    # One owner per sending domain: looked up on every customer add and CSV row.
    db.executescript(
        """
        ALTER TABLE identities ADD COLUMN sending_domain TEXT NOT NULL DEFAULT '';
        ALTER TABLE identities ADD COLUMN requested_at TEXT;
        UPDATE identities SET sending_domain = CASE
            WHEN signing_pattern LIKE '*@*.%' THEN substr(signing_pattern, 5)
            WHEN signing_pattern LIKE '*@%' THEN substr(signing_pattern, 3)
            WHEN role = 'esp' THEN domain
            ELSE '' END;
        CREATE INDEX identities_sending ON identities (sending_domain)
            WHERE sending_domain != '';
        """
    )


@migrations()
def m006_seals_and_parking(db: sqlite_utils.Database) -> None:
    # MACs with a key kept outside the database (store_seal.py); NULL until first sealed
    db.executescript(
        """
        ALTER TABLE events ADD COLUMN mac TEXT;
        ALTER TABLE keys ADD COLUMN mac TEXT;
        ALTER TABLE identities ADD COLUMN mac TEXT;
        ALTER TABLE keys ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE projection_head (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            position INTEGER NOT NULL,
            mac TEXT
        );
        """
    )


@migrations()
def m007_scale_indexes(db: sqlite_utils.Database) -> None:
    # m003 made the (domain, selector) index partial, so "which selectors has this domain
    # used" scanned every key; `log --actor` scanned every event; an ESP key's activation
    # looked at every identity for the customers it signs for.
    db.executescript(
        """
        CREATE INDEX IF NOT EXISTS keys_domain ON keys (domain);
        CREATE INDEX IF NOT EXISTS events_actor ON events (actor);
        CREATE INDEX IF NOT EXISTS identities_esp ON identities (esp_identity)
            WHERE esp_identity != '';
        """
    )


@migrations()
def m008_lifecycle(db: sqlite_utils.Database) -> None:
    # offboarding: a removed identity stays (its keys drain, its selectors stay taken)
    db.executescript(
        """
        ALTER TABLE identities ADD COLUMN retired_at TEXT;
        ALTER TABLE identities ADD COLUMN takes_over TEXT NOT NULL DEFAULT '';
        ALTER TABLE identities ADD COLUMN dns_problem TEXT NOT NULL DEFAULT '';
        ALTER TABLE identities ADD COLUMN companion_of TEXT NOT NULL DEFAULT '';
        CREATE INDEX identities_companion ON identities (companion_of) WHERE companion_of != '';
        ALTER TABLE keys ADD COLUMN drift TEXT NOT NULL DEFAULT '';
        """
    )


@migrations()
def m009_reason_codes(db: sqlite_utils.Database) -> None:
    # Status, metrics and queries select on these codes, never on the messages beside
    # them. Rows folded before codes existed get the code the fold gives their events
    # (the legacy mapping of the same text), so that `db rebuild --check` finds nothing.
    db.conn.create_function(
        "legacy_code", 1, lambda text: legacy_code(text).value, deterministic=True
    )
    db.executescript(
        """
        ALTER TABLE keys ADD COLUMN last_error_code TEXT;
        ALTER TABLE identities ADD COLUMN notice_code TEXT;
        ALTER TABLE identities ADD COLUMN dns_problem_code TEXT;
        UPDATE keys SET last_error_code = legacy_code(last_error)
            WHERE last_error IS NOT NULL AND last_error != '';
        UPDATE identities SET notice_code = legacy_code(notice) WHERE notice != '';
        UPDATE identities SET dns_problem_code = legacy_code(dns_problem) WHERE dns_problem != '';
        CREATE INDEX keys_error_code ON keys (last_error_code) WHERE last_error_code IS NOT NULL;
        CREATE INDEX identities_notice_code ON identities (notice_code)
            WHERE notice_code IS NOT NULL;
        """
    )


@migrations()
def m010_problem_indexes(db: sqlite_utils.Database) -> None:
    # The status page lists the keys and identities with a problem: these indexes hold
    # only those rows, so the list costs O(problems) at any number of keys. Their WHERE
    # is the queries' (adapters/store/overview.py), which is how SQLite picks them.
    db.executescript(
        """
        CREATE INDEX IF NOT EXISTS keys_problem ON keys (domain, created_at)
            WHERE last_error != '' OR drift != '';
        CREATE INDEX IF NOT EXISTS identities_problem ON identities (identity)
            WHERE notice != '' OR dns_problem != '';
        """
    )


# Migrations that add indexes and nothing else: no row a MAC covers changes, so opening
# with the audit key needs no re-seal (a replay of the whole log) for them.
INDEXES_ONLY = frozenset({"m007_scale_indexes", "m010_problem_indexes"})


def changes_rows(db: sqlite_utils.Database) -> bool:
    """Whether a pending migration changes what the projection's rows hold."""
    return any(m.name not in INDEXES_ONLY for m in migrations.pending(db))
