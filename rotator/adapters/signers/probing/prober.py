"""Proof at the MTA end: after a reload, a probe message is signed by the running signer
and the signature made with each key being switched to is verified (dkimpy) against what
the authoritative nameservers serve. OpenDKIM is asked through the milter protocol, rspamd
through its HTTP interface. (OpenDKIM's test mode, `opendkim -t`, only verifies: measured
on 2.11, it signs nothing, so it cannot stand in for a running instance.)"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import dkim

from ....config.targets import ProbeConfig
from ....domain.errors import ExternalError, SignerError
from ....domain.names import lookup_name
from ....ports import Observation, SigningEntry
from ..base import unique_keys
from .milter import milter_sign, signed_message
from .rspamd import rspamd_sign

# (zone, name) -> what every authoritative address of the zone answers for the name's TXT
Observe = Callable[[str, str], list[Observation]]


def probe_sender(pattern: str) -> str:
    """An address the pattern signs: *@acme.com -> probe@acme.com, *@*.acme.com ->
    probe@rotator-probe.acme.com."""
    domain = pattern.removeprefix("*@")
    if domain.startswith("*."):
        domain = "rotator-probe." + domain.removeprefix("*.")
    return f"rotator-probe@{domain}"


def probe_message(sender: str) -> bytes:
    domain = sender.partition("@")[2]
    return (
        f"From: {sender}\r\nTo: {sender}\r\nSubject: rotator signer probe\r\n"
        f"Date: {formatdate(usegmt=True)}\r\nMessage-ID: <{uuid.uuid4().hex}@{domain}>\r\n"
        "\r\nThis message only proves that the signer signs with the new key.\r\n"
    ).encode()


class Prober:
    def __init__(self, config: ProbeConfig, observe: Observe) -> None:
        self.config = config
        self.observe = observe

    def _lookup(self, entries: Sequence[SigningEntry]) -> Callable[..., bytes | None]:
        """dkimpy's `dnsfunc`: the record a verifier would find for a probe's signature,
        read straight from the authoritative servers of the key's zone."""
        where = {
            lookup_name(e.selector, e.domain).lower(): (e.zone, e.record_name) for e in entries
        }

        def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
            text = (name.decode() if isinstance(name, bytes) else name).lower()
            text = text if text.endswith(".") else text + "."
            if text not in where:
                return None
            zone, record_name = where[text]
            try:
                answers = self.observe(zone, record_name)
            except ExternalError:
                return None
            served = [o.texts[0] for o in answers if o.authoritative and len(o.texts) == 1]
            return served[0].encode() if served else None

        return dnsfunc

    @property
    def enabled(self) -> bool:
        return self.config.kind != "none"

    def check(self, entries: Sequence[SigningEntry]) -> str:
        """Prove each key of `entries` signs (one probe per key); SignerError naming the
        first that does not. Probes run concurrently: waiting on the signer, not the CPU.
        After a failure no further probe starts (the check has failed; a dead signer must
        not hold the signer lock for one timeout per batch of keys)."""
        keys = unique_keys(entries)
        if not keys:
            return "nothing to prove"
        dnsfunc = self._lookup(entries)
        failed = threading.Event()
        skipped: list[SigningEntry] = []

        def probe(entry: SigningEntry) -> str | None:
            if failed.is_set():
                skipped.append(entry)
                return None
            problem = self._one(entry, dnsfunc)
            if problem:
                failed.set()
            return problem

        with ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:
            problems = [p for p in pool.map(probe, keys) if p]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            unproven = f"; {len(skipped)} keys not probed" if skipped else ""
            raise SignerError(problems[0] + more + unproven)
        return f"{len(keys)} keys seen signing through the live signer and verified"

    def _one(self, entry: SigningEntry, dnsfunc: Callable[..., bytes | None]) -> str | None:
        """Signers reload asynchronously (OpenDKIM on its next connection, rspamd's new
        workers after a SIGHUP): the probe is tried again, with a growing pause, until
        it proves the key or the probe's timeout runs out. Each try gets only the time left:
        the timeout bounds the whole probe, however slowly the signer answers."""
        sender = probe_sender(entry.signing_pattern)
        deadline = time.monotonic() + self.config.timeout
        pause = 0.1
        while True:
            try:
                left = max(0.001, deadline - time.monotonic())
                signed = self._sign(probe_message(sender), sender, left)
            except SignerError as exc:
                problem: str | None = f"probe of s={entry.selector} d={entry.domain}: {exc.reason}"
            else:
                problem = self._verify(signed, entry, dnsfunc)
            if problem is None or time.monotonic() + pause > deadline:
                return problem
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _sign(self, message: bytes, sender: str, timeout: float) -> bytes:
        cfg = self.config
        if cfg.kind == "milter":
            result = milter_sign(
                cfg.address, message, sender=sender, recipients=[sender], timeout=timeout
            )
            return signed_message(message, result)
        if cfg.kind == "rspamd":
            url = cfg.url if cfg.url.endswith("/checkv2") else cfg.url.rstrip("/") + "/checkv2"
            headers = rspamd_sign(url, message, sender=sender, timeout=timeout)
            return b"".join(f"DKIM-Signature: {h}\r\n".encode() for h in headers) + message
        raise SignerError(f"probe kind {cfg.kind!r} cannot sign")

    def _verify(
        self, signed: bytes, entry: SigningEntry, dnsfunc: Callable[..., bytes | None]
    ) -> str | None:
        """None if a signature with d=entry.domain s=entry.selector is there and verifies."""
        want = f"s={entry.selector} d={entry.domain}"
        verifier = dkim.DKIM(signed)
        headers = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"]
        for index, value in enumerate(headers):
            tags = dict(
                part.strip().split("=", 1)
                for part in value.decode(errors="replace").replace("\r\n", "").split(";")
                if "=" in part
            )
            if tags.get("d", "").strip().lower() != entry.domain:
                continue
            if tags.get("s", "").strip().lower() != entry.selector:
                continue
            try:
                ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
            except dkim.DKIMException as exc:
                return f"probe: the signature {want} does not verify: {exc}"
            return None if ok else f"probe: the signature {want} does not verify"
        seen = len(headers)
        return f"probe: the live signer made {seen} signatures, none with {want}"
