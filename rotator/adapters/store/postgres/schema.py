"""The event store's schema on PostgreSQL: the same tables, columns and values as SQLite's
(so that a row's MAC and an event's hash are the same on both, and a log moves from one to
the other as it is), with PostgreSQL's own triggers and indexes. Every text column sorts
as "C" (bytes, the order Python compares str in), whatever the database's locale: a
rebuild merge-joins index order with the replayed streams, a signer table lists senders in
that order. Each version's DDL runs once, in order, under the writers' lock."""

from __future__ import annotations

import psycopg

from ....domain.errors import RotatorError
from .locks import WRITERS, xact_lock

# "C": every text column; the timestamps are ISO text, as in SQLite
T = 'TEXT COLLATE "C"'

V1 = f"""
CREATE TABLE events (
    position BIGINT PRIMARY KEY,
    stream_id {T} NOT NULL,
    version INTEGER NOT NULL,
    at {T} NOT NULL,
    type {T} NOT NULL,
    identity {T},
    key_id {T},
    domain {T},
    selector {T},
    actor {T} NOT NULL,
    reason {T} NOT NULL,
    payload {T} NOT NULL,
    prev_hash {T} NOT NULL,
    hash {T} NOT NULL,
    mac {T},
    UNIQUE (stream_id, version)
);
-- a replay reads each key's and identity's events together, in log order
CREATE INDEX events_key ON events (key_id, position);
CREATE INDEX events_identity ON events (identity, position);
CREATE INDEX events_domain ON events (domain);
CREATE INDEX events_type ON events (type);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_actor ON events (actor);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

CREATE TABLE keys (
    key_id {T} PRIMARY KEY,
    identity {T} NOT NULL,
    domain {T} NOT NULL,
    selector {T} NOT NULL,
    policy {T} NOT NULL,
    algorithm {T} NOT NULL,
    bits INTEGER NOT NULL,
    fingerprint {T} NOT NULL,
    zone {T} NOT NULL,
    record_name {T} NOT NULL,
    record {T} NOT NULL,
    ttl INTEGER NOT NULL,
    state {T} NOT NULL,
    since {T} NOT NULL,
    created_at {T} NOT NULL,
    version INTEGER NOT NULL,
    next_action {T},
    next_action_at {T},
    attempts INTEGER NOT NULL,
    last_error {T},
    replaces {T},
    successor {T},
    revocation_published INTEGER NOT NULL,
    tombstone_removed INTEGER NOT NULL,
    activated_at {T},
    drain_until {T},
    lookup_name {T} NOT NULL DEFAULT '',
    customer_managed INTEGER NOT NULL DEFAULT 0,
    compromised INTEGER NOT NULL DEFAULT 0,
    emergency_actor {T} NOT NULL DEFAULT '',
    emergency_reason {T} NOT NULL DEFAULT '',
    mac {T},
    parked INTEGER NOT NULL DEFAULT 0,
    drift {T} NOT NULL DEFAULT '',
    last_error_code {T}
);
-- ping-pong slots reuse a selector once its previous key is revoked
CREATE UNIQUE INDEX keys_domain_selector ON keys (domain, selector)
    WHERE state NOT IN ('revoked', 'destroyed');
CREATE INDEX keys_identity ON keys (identity);
CREATE INDEX keys_state ON keys (state);
CREATE INDEX keys_due ON keys (next_action_at) WHERE next_action_at IS NOT NULL;
CREATE INDEX keys_domain ON keys (domain);
CREATE INDEX keys_error_code ON keys (last_error_code) WHERE last_error_code IS NOT NULL;

CREATE TABLE identities (
    identity {T} PRIMARY KEY,
    domain {T} NOT NULL,
    zone {T} NOT NULL,
    policy {T} NOT NULL,
    signing_pattern {T} NOT NULL,
    created_at {T} NOT NULL,
    version INTEGER NOT NULL,
    active_key {T},
    pending_key {T},
    rotation_due_at {T},
    customer {T} NOT NULL DEFAULT '',
    mode {T} NOT NULL DEFAULT 'third-party',
    role {T} NOT NULL DEFAULT 'customer',
    esp_identity {T} NOT NULL DEFAULT '',
    notice {T} NOT NULL DEFAULT '',
    rotate_at {T},
    emergency_actor {T} NOT NULL DEFAULT '',
    emergency_reason {T} NOT NULL DEFAULT '',
    sending_domain {T} NOT NULL DEFAULT '',
    requested_at {T},
    mac {T},
    retired_at {T},
    takes_over {T} NOT NULL DEFAULT '',
    dns_problem {T} NOT NULL DEFAULT '',
    companion_of {T} NOT NULL DEFAULT '',
    notice_code {T},
    dns_problem_code {T}
);
CREATE INDEX identities_due ON identities (rotation_due_at) WHERE rotation_due_at IS NOT NULL;
CREATE INDEX identities_customer ON identities (customer);
CREATE INDEX identities_sending ON identities (sending_domain) WHERE sending_domain != '';
CREATE INDEX identities_esp ON identities (esp_identity) WHERE esp_identity != '';
CREATE INDEX identities_companion ON identities (companion_of) WHERE companion_of != '';
CREATE INDEX identities_notice_code ON identities (notice_code) WHERE notice_code IS NOT NULL;

CREATE TABLE projection_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    position BIGINT NOT NULL,
    mac {T}
);

-- SQLite's PRAGMA data_version: bumped by every statement that writes the projection,
-- visible when it commits (a signer table read while it moved is read again)
CREATE TABLE data_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL
);
INSERT INTO data_version VALUES (1, 0);
CREATE FUNCTION projection_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE data_version SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END $$;
CREATE TRIGGER keys_written AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keys
    FOR EACH STATEMENT EXECUTE FUNCTION projection_written();
CREATE TRIGGER identities_written AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON identities
    FOR EACH STATEMENT EXECUTE FUNCTION projection_written();
"""

# The status page lists the keys and identities with a problem: these indexes hold only
# those rows (their WHERE is the queries', adapters/store/overview.py).
V2 = """
CREATE INDEX keys_problem ON keys (domain, created_at, key_id)
    WHERE last_error != '' OR drift != '';
CREATE INDEX identities_problem ON identities (identity)
    WHERE notice != '' OR dns_problem != '';
"""

# The leader's lease (adapters/store/postgres/leadership.py): one row, its epoch one more
# each time a node takes it, its times on the server's clock. Never part of the log: who
# leads is not a fact about keys, and a write that checks it must not be one more event.
V3 = f"""
CREATE TABLE leader (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    node {T} NOT NULL,
    epoch BIGINT NOT NULL,
    since TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    holder {T} NOT NULL
);
INSERT INTO leader VALUES (1, '', 0, 'epoch', 'epoch', '');
"""

# one DDL script per schema version, applied in order; never edit one that was released
VERSIONS = (V1, V2, V3)
# versions that add indexes or tables outside the projection: no row a MAC covers changes,
# so an upgrade through them alone needs no re-seal (a replay of the whole log)
INDEXES_ONLY = frozenset({2, 3})


def version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The schema version the database is at (0: not a rotator database yet)."""
    found = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not found or not found[0]:
        return 0
    row = conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
    return int(str(row[0])) if row else 0


def pending(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    return version(conn) < len(VERSIONS)


def apply(conn: psycopg.Connection[tuple[object, ...]], where: str) -> bool:
    """Bring the schema up to date, in one transaction (the writers wait): whether a
    rotator database was upgraded by a version that changes the rows a MAC covers (they
    need sealing again), not made or given indexes only."""
    with conn.transaction():
        xact_lock(conn, WRITERS)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
        )
        at = version(conn)
        if at > len(VERSIONS):
            raise RotatorError(
                f"database {where} is at schema version {at}, newer than this rotator's "
                f"({len(VERSIONS)}); upgrade rotator"
            )
        for script in VERSIONS[at:]:
            conn.execute(script.encode())  # no parameters: several statements at once
        conn.execute(
            "INSERT INTO schema_version VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            [len(VERSIONS)],
        )
    return at > 0 and any(v not in INDEXES_ONLY for v in range(at + 1, len(VERSIONS) + 1))
