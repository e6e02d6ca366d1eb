"""The security review's findings, each reproduced: customer keys, the projection as a
back door, the keyed audit chain, least privilege, configuration and secrets, key files,
one customer's DNS stalling the rest, operator views."""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from rotator.adapters.keys.files import FsKeyStore
from rotator.app import CustomerRow, Scope
from rotator.config.dns import load_tsig_secret
from rotator.config.settings import load_config
from rotator.domain import events as ev
from rotator.domain.errors import ConfigError, ExternalError, InputError
from rotator.domain.states import State
from rotator.process import dumpable, harden_process

from .clirun import add, db_path, event_count, ok, refused, run, write_config
from .conftest import UnitEnv

# --- 1. customer-supplied keys ---------------------------------------------------------------


def rsa_pem(bits: int, exponent: int = 65537, fmt: Any = None) -> bytes:
    key = rsa.generate_private_key(public_exponent=exponent, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        fmt or serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def customer_env(env: UnitEnv, algorithm: str = "rsa") -> UnitEnv:
    env.policies["ck"] = dataclasses.replace(
        env.policies["demo"],
        name="ck",
        algorithm=algorithm,
        bits=2048 if algorithm == "rsa" else 256,
    )
    env.app.onboarding.add_customers([CustomerRow("Acme", "acme.example", "customer-key", "ck")])
    return env


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the 512-bit key")
def test_customer_rsa_keys_follow_rfc_8301(env: UnitEnv) -> None:
    customer_env(env)
    weak = subprocess.run(["openssl", "genrsa", "512"], capture_output=True, check=True).stdout
    with pytest.raises(InputError, match="RSA key of 512 bits: RFC 8301 needs 1024 to 4096"):
        env.app.keyimport.import_key("acme.example", "c1", weak, "op")
    with pytest.raises(InputError, match="public exponent 3: DKIM keys use e=65537"):
        env.app.keyimport.import_key("acme.example", "c1", rsa_pem(1024, exponent=3), "op")
    with pytest.raises(InputError, match="RSA key of 4104 bits"):
        env.app.keyimport.import_key("acme.example", "c1", rsa_pem(4104), "op")
    assert env.store.list_keys() == []


def test_a_huge_key_file_is_refused_before_it_is_parsed(env: UnitEnv) -> None:
    customer_env(env)
    started = time.monotonic()
    blob = b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 2_000_000 + b"\n-----END PRIVATE KEY-----\n"
    with pytest.raises(InputError, match="a DKIM private key is under 16384"):
        env.app.keyimport.import_key("acme.example", "c1", blob, "op")
    assert time.monotonic() - started < 1


def test_a_customer_key_must_match_the_policy_algorithm(env: UnitEnv) -> None:
    customer_env(env)  # an RSA policy
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InputError, match="the key is ed25519, but policy 'ck' signs with rsa"):
        env.app.keyimport.import_key("acme.example", "c1", ed, "op")


def test_rotator_keeps_its_own_pkcs8_copy_not_the_customers_bytes(env: UnitEnv) -> None:
    customer_env(env)
    given = rsa_pem(2048) + b"# a comment a customer left in the file\n"
    key = env.app.keyimport.import_key("acme.example", "c1", given, "op")
    stored = env.keystore.path(key.key_id).read_bytes()
    assert stored.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, not "RSA PRIVATE KEY"
    assert b"comment" not in stored and stored != given
    assert env.keystore.describe(stored)[2] == env.keystore.describe(given)[2]  # same key


def test_a_pending_import_can_be_cancelled(env: UnitEnv) -> None:
    customer_env(env)
    first = env.app.keyimport.import_key("acme.example", "c1", rsa_pem(2048), "op")
    with pytest.raises(InputError, match="cancel it with `rotator customer cancel-import"):
        env.app.keyimport.import_key("acme.example", "c2", rsa_pem(2048), "op")
    env.app.keyimport.cancel("acme.example", "op", "customer sent the wrong key")
    assert env.store.identity("acme.example").pending_key is None
    env.app.lifecycle.tick()
    assert env.key(first.key_id).state is State.DESTROYED
    assert not env.keystore.exists(first.key_id)
    assert "KeyWithdrawn" in env.types(first.key_id)
    second = env.app.keyimport.import_key("acme.example", "c2", rsa_pem(2048), "op")
    assert env.key(second.key_id).state is State.PUBLISHED


def test_the_printed_txt_line_uses_the_policy_ttl(env: UnitEnv) -> None:
    customer_env(env)
    env.app.keyimport.import_key("acme.example", "c1", rsa_pem(2048), "op")
    ident = env.store.identity("acme.example")
    assert ident is not None
    _, records = env.app.onboarding.instructions(ident)
    ttl = env.policies["ck"].ttl
    assert any(r.startswith(f"c1._domainkey.acme.example. {ttl} IN TXT") for r in records)


# --- 2. the projection is not a back door ---------------------------------------------------


def test_names_are_checked_against_dns_limits_when_the_customer_is_added(env: UnitEnv) -> None:
    long_domain = ".".join(["a" * 61] * 4)[:240] + ".example"  # a valid 249-octet name
    with pytest.raises(InputError, match="253"):
        env.app.onboarding.add_customers(
            [CustomerRow("Acme", long_domain, "cname", "demo", zone="cname.esp.test")]
        )
    assert env.events() == 0


def test_an_edited_record_name_is_refused_and_the_rest_go_on(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("a.example", "demo")
    env.app.onboarding.add_identity("b.example", "demo")
    env.app.lifecycle.tick()
    env.clock.advance(61)
    env.app.lifecycle.tick()  # both rotate: the first keys drain
    # someone with write access to the database points a key at a name it must not touch
    conn = sqlite3.connect(env.store.path)
    conn.execute(
        "UPDATE keys SET record_name = 'victim.example.' WHERE domain = 'a.example' "
        "AND state = 'draining'"
    )
    conn.commit()
    conn.close()
    env.clock.advance(31)  # both revocations are due
    env.app.lifecycle.tick()
    assert "victim.example." not in env.dns.records
    bad = next(k for k in env.store.list_keys() if k.record_name == "victim.example.")
    assert bad.state is State.DRAINING
    assert bad.last_error is not None and "refusing to publish" in bad.last_error
    assert any(k.state is State.DESTROYED for k in env.keys("b.example"))  # b went on


def test_a_step_that_crashes_fails_alone(env: UnitEnv) -> None:
    for d in ("a.example", "b.example", "c.example"):
        env.app.onboarding.add_identity(d, "demo")
    real = env.dns.apply

    def apply(zone: str, changes: Any) -> str:
        if zone == "b.example":
            raise RuntimeError("a bug no check foresaw")
        return real(zone, changes)

    env.dns.apply = apply  # type: ignore[method-assign]
    env.app.lifecycle.tick()  # must not raise
    states = {k.domain: k for k in env.store.list_keys()}
    assert states["a.example"].state is State.ACTIVE
    assert states["c.example"].state is State.ACTIVE
    assert states["b.example"].state is State.GENERATED
    assert "internal error: RuntimeError: a bug no check foresaw" in states["b.example"].last_error


def test_a_step_that_keeps_failing_is_parked_with_one_event(env: UnitEnv) -> None:
    env.policies["demo"] = dataclasses.replace(env.policies["demo"], park_after=3)
    env.app.onboarding.add_identity("example.com", "demo")
    env.dns.fail_publish = "NOTAUTH from 127.0.0.1:53"
    for _ in range(6):
        env.app.lifecycle.tick()
        env.clock.advance(60)
    (key,) = env.store.list_keys()
    assert key.parked and key.next_action_at is None
    assert key.last_error == "parked after 3 failures: NOTAUTH from 127.0.0.1:53"
    kinds = [
        type(s.event).__name__
        for s in env.store.events()
        if s.event.__class__ is not ev.IdentityAdded
    ]
    assert kinds.count("ActionFailed") == 2 and kinds.count("StepParked") == 1
    env.dns.fail_publish = None
    env.app.rotation.resume("example.com", "op", "zone fixed")
    env.app.lifecycle.tick()
    assert env.key(key.key_id).state is State.ACTIVE


# --- 3. the keyed audit chain ------------------------------------------------------------------


def tamper(cfg: Path, sql: str) -> None:
    conn = sqlite3.connect(db_path(cfg))
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
    conn.execute(sql)
    conn.commit()
    conn.close()


def test_an_edited_projection_row_is_caught(cfg: Path) -> None:
    add(cfg, "example.com")
    tamper(cfg, "UPDATE identities SET zone = 'attacker.example'")
    line = refused(cfg, "status")
    assert "identities row example.com was not written by rotator" in line
    out = run(cfg, "audit", "verify")
    assert out.exit_code != 0 and "identities row example.com: not sealed by rotator" in out.stdout


def test_a_recomputed_hash_chain_is_caught_by_the_macs(cfg: Path) -> None:
    from rotator.adapters.store.rows import event_hash

    add(cfg, "example.com", "--actor", "alice")
    add(cfg, "example.net")
    conn = sqlite3.connect(db_path(cfg))
    conn.row_factory = sqlite3.Row
    conn.execute("DROP TRIGGER events_no_update")
    rows = [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY position")]
    prev = "0" * 64
    for row in rows:  # rewrite the actor and recompute the whole chain, as an attacker can
        if row["position"] == 1:
            row["actor"] = "mallory"
        row["prev_hash"] = prev
        body = {k: v for k, v in row.items() if k not in ("position", "hash", "mac")}
        row["hash"] = event_hash(body)
        conn.execute(
            "UPDATE events SET actor = ?, prev_hash = ?, hash = ? WHERE position = ?",
            [row["actor"], row["prev_hash"], row["hash"], row["position"]],
        )
        prev = row["hash"]
    conn.commit()
    conn.close()
    result = run(cfg, "audit", "verify")
    assert result.exit_code != 0
    assert "event 1: MAC does not match (rewritten)" in result.stdout


def test_a_cut_off_tail_is_caught_by_the_anchor(cfg: Path) -> None:
    add(cfg, "example.com")
    add(cfg, "example.net")
    tamper(cfg, "DELETE FROM events WHERE position = 2")
    line = refused(cfg, "audit", "verify")
    assert "the log ends at event 1 but the anchor" in line and "has event 2" in line
    line = refused(cfg, "run", "--once")
    assert line.startswith("Error: refusing to start: ")


def rehash(cfg: Path, *sql: str) -> tuple[int, str]:
    """Every MAC removed, event 1's actor edited, the chain hashed again, then `sql`."""
    from rotator.adapters.store.rows import event_hash

    conn = sqlite3.connect(db_path(cfg))
    conn.row_factory = sqlite3.Row
    conn.execute("DROP TRIGGER events_no_update")
    prev, position = "0" * 64, 0
    for row in [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY position")]:
        position = row["position"]
        row["actor"] = "mallory" if position == 1 else row["actor"]
        row["prev_hash"] = prev
        prev = event_hash({k: v for k, v in row.items() if k not in ("position", "hash", "mac")})
        conn.execute(
            "UPDATE events SET actor = ?, prev_hash = ?, hash = ?, mac = NULL WHERE position = ?",
            [row["actor"], row["prev_hash"], prev, position],
        )
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return position, prev


@pytest.mark.parametrize("anchor", ["forged line", "deleted"])
def test_stripped_macs_and_a_rehashed_chain_are_refused(cfg: Path, anchor: str) -> None:
    add(cfg, "example.com", "--actor", "alice")
    add(cfg, "example.net")
    position, digest = rehash(cfg, "UPDATE projection_head SET mac = NULL")
    anchor_log = cfg.parent / "state" / "anchor.log"
    if anchor == "deleted":
        anchor_log.unlink()
    else:
        with anchor_log.open("a") as fh:
            fh.write(f"{position} {digest}\n")
    before = sqlite3.connect(db_path(cfg)).execute("SELECT * FROM identities").fetchall()
    if anchor == "forged line":  # the events the anchor shows sealed, and their hashes
        assert "2 MACs do not match" in refused(cfg, "audit", "verify")
        reason = "differs from the anchor"
    else:  # the key exists: the projection's head remembers that the log was sealed
        assert "projection head: MAC removed" in refused(cfg, "audit", "verify")
        reason = "no MAC on its last event"
    assert reason in refused(cfg, "db", "rebuild")
    assert reason in refused(cfg, "run", "--once")
    assert sqlite3.connect(db_path(cfg)).execute("SELECT * FROM identities").fetchall() == before


def test_a_rollback_is_refused_despite_a_forged_anchor_line(cfg: Path) -> None:
    add(cfg, "example.com")
    old = sqlite3.connect(cfg.parent / "old.db")
    sqlite3.connect(db_path(cfg)).backup(old)  # a copy of the database as it is now
    position, digest = ok(cfg, "audit", "head").stdout.split()
    add(cfg, "example.net")
    old.backup(sqlite3.connect(db_path(cfg)))  # restored over the newer one
    old.close()
    with (cfg.parent / "state" / "anchor.log").open("a") as fh:
        fh.write(f"{position} {digest}\n")
    line = refused(cfg, "audit", "verify")
    assert "has event 2: the log was cut off or rolled back" in line
    line = refused(cfg, "run", "--once")
    assert line.startswith("Error: ") and "has event 2: the log was cut off or rolled back" in line


def test_audit_head_is_the_last_event(cfg: Path) -> None:
    add(cfg, "example.com")
    position, digest = ok(cfg, "audit", "head").stdout.split()
    assert position == "1" and len(digest) == 64
    anchor = (cfg.parent / "state" / "anchor.log").read_text().split()
    assert anchor[:2] == [position, digest]
    # keyed: the MAC of the line (the first: no line before it) with the audit key
    from rotator.adapters.store.seal import Sealer

    key = (cfg.parent / "state" / "audit.key").read_bytes()
    assert anchor[2:] == [Sealer(key).anchor(1, digest, "")]


def test_the_audit_key_is_made_once_and_kept_private(cfg: Path) -> None:
    add(cfg, "example.com")
    key = cfg.parent / "state" / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o400 and len(key.read_bytes()) == 32
    key.unlink()  # the log now depends on it: a missing key is not silently replaced
    line = refused(cfg, "domain", "add", "example.net", "--policy", "demo")
    assert "audit key" in line and "is missing" in line


def test_a_stripped_log_without_its_key_gets_no_new_key(cfg: Path) -> None:
    # a new key would seal whatever the log now holds: the anchor remembers it was sealed
    add(cfg, "example.com")
    tamper(cfg, "UPDATE events SET mac = NULL")
    tamper(cfg, "UPDATE projection_head SET mac = NULL")
    key = cfg.parent / "state" / "audit.key"
    key.unlink()
    line = refused(cfg, "domain", "add", "example.net", "--policy", "demo")
    assert "audit key" in line and "is missing" in line
    assert not key.exists()


# --- 4. least privilege -----------------------------------------------------------------------


def test_read_only_commands_never_load_the_tsig_secret(cfg: Path) -> None:
    add(cfg, "example.com")
    secret = cfg.parent / "tsig.secret"
    secret.write_text("unreadable now")
    secret.chmod(0o600)
    text = cfg.read_text()
    start = text.index("tsig_secret = ")
    end = text.index("\n", start)
    cfg.write_text(text[:start] + f'tsig_secret_file = "{secret}"' + text[end:])
    cfg.chmod(0o600)
    for args in (("status",), ("log",), ("audit", "verify"), ("customer", "list")):
        ok(cfg, *args)  # the secret file holds garbage: they never read it
    line = refused(cfg, "domain", "add", "example.net", "--policy", "demo")
    assert "tsig_secret_file" in line and "not base64" in line


@pytest.mark.skipif(shutil.which("tsig-keygen") is None, reason="needs bind9-utils")
def test_a_tsig_secret_file_may_hold_what_tsig_keygen_prints(tmp_path: Path) -> None:
    keygen = subprocess.run(
        ["tsig-keygen", "-a", "hmac-sha256", "rotator"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    cfg = write_config(tmp_path)
    secret = tmp_path / "tsig.key"
    secret.write_text(keygen.stdout)
    secret.chmod(0o600)
    text = cfg.read_text()
    start = text.index("tsig_secret = ")
    cfg.write_text(
        text[:start] + f'tsig_secret_file = "{secret}"' + text[text.index("\n", start) :]
    )
    cfg.chmod(0o600)
    dns = load_config(cfg).dns
    assert load_tsig_secret(dns) in keygen.stdout and len(load_tsig_secret(dns)) == 44
    for edit in (('"rotator"', '"mismatch"'), ("hmac-sha256", "hmac-sha512")):
        secret.write_text(keygen.stdout.replace(*edit))
        with pytest.raises(ConfigError, match="make the two the same"):
            load_tsig_secret(dns)
    secret.write_text("key rotator { algorithm hmac-sha256; };\n")
    with pytest.raises(ConfigError, match="no secret"):
        load_tsig_secret(dns)


def test_the_recorded_actor_is_beside_the_real_uid(cfg: Path) -> None:
    add(cfg, "example.com", "--actor", "somebody-else")
    line = ok(cfg, "log").stdout.strip()
    assert f"by somebody-else [uid={os.getuid()}(" in line


# --- 5. configuration and secrets ----------------------------------------------------------


def test_a_config_writable_by_others_is_refused(cfg: Path) -> None:
    cfg.chmod(0o620)
    line = refused(cfg, "status")
    assert "writable by group or others" in line and "chmod go-w" in line


def test_an_inline_secret_in_a_world_readable_config_is_refused(cfg: Path) -> None:
    cfg.chmod(0o644)
    line = refused(cfg, "status")
    assert "holds a secret but is readable by others" in line


@pytest.mark.parametrize(
    ("dns", "needle"),
    [
        ({"tsig_secret": base64.b64encode(b"short").decode()}, "the secret is 5 bytes"),
        ({"tsig_algorithm": "hmac-sha1"}, "'hmac-sha1' is not allowed"),
    ],
)
def test_weak_tsig_is_refused(tmp_path: Path, dns: dict[str, str], needle: str) -> None:
    cfg = write_config(tmp_path, **dns)
    if "tsig_algorithm" in dns:
        cfg.write_text(
            cfg.read_text().replace(
                "[dns]\n", f'[dns]\ntsig_algorithm = "{dns["tsig_algorithm"]}"\n'
            )
        )
    line = refused(cfg, "status")
    assert needle in line


def test_the_secret_is_in_no_repr(cfg: Path) -> None:
    config = load_config(cfg)
    secret = config.dns.tsig_secret
    assert secret and secret not in repr(config) and secret not in str(config.dns)


def test_policy_files_writable_by_others_are_refused(tmp_path: Path) -> None:
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "demo.toml").write_text('[key]\nalgorithm = "ed25519"\n')
    (pol / "demo.toml").chmod(0o666)
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("policy_dir = ", f'policy_dir = "{pol}" #'))
    cfg.chmod(0o600)
    line = refused(cfg, "status")
    assert "demo.toml: a policy is writable by group or others" in line


# --- 6. key files -----------------------------------------------------------------------------


def test_destroy_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    ks = FsKeyStore(tmp_path / "keys")
    ks.generate("k1", "ed25519", 256)
    target = tmp_path / "precious"
    target.write_bytes(b"not yours")
    (ks.dir / "k1.pem").unlink()
    (ks.dir / "k1.pem").symlink_to(target)
    ks.destroy("k1")
    assert target.read_bytes() == b"not yours"
    assert not (ks.dir / "k1.pem").exists()


def test_destroy_refuses_a_file_of_another_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    ks = FsKeyStore(tmp_path / "keys")
    ks.generate("k1", "ed25519", 256)
    os.chown(ks.path("k1"), 65534, 65534)
    with pytest.raises(ExternalError, match="not a regular file owned by this user"):
        ks.destroy("k1")


def test_a_planted_temp_file_never_receives_key_material(tmp_path: Path) -> None:
    ks = FsKeyStore(tmp_path / "keys")
    ks.prepare()
    trap = tmp_path / "world-readable"
    for name in ("k1.tmp", ".k1.tmp"):
        (ks.dir / name).symlink_to(trap)
    ks.generate("k1", "ed25519", 256)
    assert not trap.exists()
    assert stat.S_IMODE(ks.path("k1").stat().st_mode) == 0o600


def test_the_process_is_not_dumpable_once_hardened() -> None:
    pid = os.fork()
    if pid == 0:  # in a child: harden_process is for the whole process, for good
        harden_process()
        os._exit(0 if not dumpable() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_systemd_unit_keeps_keys_out_of_cores_and_swap() -> None:
    unit = (Path(__file__).resolve().parents[2] / "deploy" / "rotator.service").read_text()
    assert "\nLimitCORE=0\n" in unit and "\nMemorySwapMax=0\n" in unit


# --- 8. operator views ------------------------------------------------------------------------


def test_markup_in_a_customer_name_is_printed_as_text(cfg: Path) -> None:
    ok(
        cfg,
        "customer",
        "add",
        "Acme[/]",
        "--domain",
        "acme.example",
        "--mode",
        "third-party",
        "--policy",
        "demo",
        "--signing-domain",
        "acme.esp.test",
    )
    out = ok(cfg, "customer", "list").stdout
    assert "Acme[/]" in out


def test_customer_names_refuse_control_characters(cfg: Path) -> None:
    line = refused(
        cfg,
        "customer",
        "add",
        "Acme\x1b[31m",
        "--domain",
        "acme.example",
        "--mode",
        "third-party",
        "--policy",
        "demo",
        "--signing-domain",
        "acme.esp.test",
    )
    assert "control characters" in line
    assert event_count(cfg) == 0


# --- 7. one customer's DNS never stalls another's -------------------------------------------


def test_a_customer_whose_dns_hangs_stalls_nobody_else(make_env: Any) -> None:
    env: UnitEnv = make_env(esp_nameservers=("ns1.esp.test", "ns2.esp.test"))
    env.ctx.customer_check_s = 0.5
    env.app.onboarding.add_identity("esp-owned.example", "demo")
    env.app.onboarding.add_customers(
        [
            CustomerRow("Slow", "slow.example", "ns-delegation", "demo"),
            CustomerRow("Fine", "fine.example", "ns-delegation", "demo"),
        ]
    )
    env.dns.delegations["myesp._domainkey.fine.example"] = {"ns1.esp.test", "ns2.esp.test"}
    env.dns.delegations["myesp._domainkey.slow.example"] = {"ns1.esp.test", "ns2.esp.test"}
    seen_revoked: list[bool] = []
    real = env.dns.delegation

    def delegation(zone: str, deadline: float | None = None) -> Any:
        if zone.startswith("myesp._domainkey.slow"):
            # ESP-owned work of this tick (the revocation below) is already done
            seen_revoked.append(env.dns.records.get(old_name) == "v=DKIM1; p=")
            time.sleep(5)  # 20 dead nameservers, say
        return real(zone, deadline)

    env.app.lifecycle.tick()  # first keys: nothing slow yet
    (old,) = env.keys("esp-owned.example", State.ACTIVE)
    old_name = old.record_name
    env.app.emergency.declare(
        env.app.emergency.plan(Scope(domain="esp-owned.example")),
        "op",
        "leak",
    )
    env.app.rotation.request("slow.example", "op", "")
    env.app.rotation.request("fine.example", "op", "")
    env.dns.delegation = delegation  # type: ignore[method-assign]
    started = time.monotonic()
    env.app.lifecycle.tick()
    assert time.monotonic() - started < 3  # not 5 s (x 3 passes) behind the slow customer
    assert seen_revoked and all(seen_revoked)
    assert env.dns.records[old_name] == "v=DKIM1; p="
    fine = [k for k in env.keys("fine.example") if k.state is State.ACTIVE and k.replaces]
    assert len(fine) == 1  # the other customer's new key went live in that same tick
    slow = [k for k in env.keys("slow.example") if k.replaces]
    assert slow and slow[0].state is State.PUBLISHED
    assert "took longer than 0.5s" in (slow[0].last_error or "")


def test_the_bulk_signing_read_refuses_an_edited_row(tmp_path: Path) -> None:
    # The complete signing set is read as raw tuples (a million identities at start-up):
    # each row's MAC is still checked, so an edited pattern never reaches a signer table.
    from rotator.adapters.keys.files import FsKeyStore
    from rotator.adapters.store.seal import Sealer
    from rotator.adapters.store.sqlite import SqliteEventStore
    from rotator.app import Application, Context
    from rotator.domain.errors import StoreError
    from tests.unit.fakes import FakeDns, FakeSigner, ManualClock, demo_policy

    store = SqliteEventStore(tmp_path / "r.db", sealer=Sealer(b"k" * 32))
    dns, policy = FakeDns(), demo_policy()
    ctx = Context(store, lambda _n: policy, dns, dns, FsKeyStore(tmp_path / "keys"),
                  FakeSigner(), ManualClock())  # fmt: skip
    app = Application(ctx)
    app.onboarding.add_identity("example.com", "demo")
    app.lifecycle.tick()
    assert [e.signing_pattern for e in app.signing.entries()] == ["*@example.com"]
    store.db.execute("UPDATE identities SET signing_pattern = '*@victim.example'")
    store.db.conn.commit()
    with pytest.raises(StoreError, match=r"identities row example\.com was not written by"):
        app.signing.sync()


def test_a_schema_upgrade_reseals_the_projection(tmp_path: Path) -> None:
    # A migration that adds columns changes every row a MAC covers: the store replays the
    # log into the projection on the upgrade, so the rows are rotator's again.
    from rotator.adapters.store.seal import Sealer
    from rotator.adapters.store.sqlite import SqliteEventStore
    from rotator.domain import events as ev
    from tests.unit.fakes import ManualClock

    sealer = Sealer(b"k" * 32)
    store = SqliteEventStore(tmp_path / "r.db", sealer=sealer)
    store.append(
        [ev.IdentityAdded(at=ManualClock().now(), identity="a.example", domain="a.example",
                          zone="a.example", policy="demo", signing_pattern="*@a.example")],
        {},
    )  # fmt: skip
    store.close()
    # what an older rotator left: without m008's columns, rows sealed as they were then
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.execute("DROP INDEX identities_companion")
    for index in ("keys_problem", "identities_problem"):  # m010's, made after m008
        conn.execute(f"DROP INDEX {index}")
    for col in ("retired_at", "takes_over", "dns_problem", "companion_of"):
        conn.execute(f"ALTER TABLE identities DROP COLUMN {col}")
    conn.execute("ALTER TABLE keys DROP COLUMN drift")
    conn.execute(
        "DELETE FROM _sqlite_migrations WHERE name IN ('m008_lifecycle', 'm010_problem_indexes')"
    )
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM identities").fetchone())
    conn.execute("UPDATE identities SET mac = ?", [sealer.row("identities", row)])
    conn.commit()
    conn.close()
    store = SqliteEventStore(tmp_path / "r.db", sealer=sealer)
    ident = store.identity("a.example")  # would be refused as edited without the reseal
    assert ident is not None and ident.retired_at is None
