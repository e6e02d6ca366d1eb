"""The long tail of DNS providers through dns-lexicon (an optional dependency: imported
only when a backend of this kind is built). A change lists the name's TXT records, and if
they are not already exactly the record, deletes them and creates it: sending a batch
again changes nothing."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...config.backends import BackendConfig
from ...config.backends.lexicon import LexiconConfig, provider_options
from ...domain.errors import ConfigError, PublishError
from ...domain.reasons import Reason
from ...ports import SAID_NO, Publisher, RecordChange
from .fanout import PerZone
from .powerdns import txt_content

if TYPE_CHECKING:
    from lexicon.config import ConfigResolver
    from lexicon.interfaces import Provider

# How each provider takes a TXT record longer than one 255-octet character-string (the
# `txt_format` "auto"): "quoted" `"..." "..."` as a zone file writes it; "inner" without
# the outer quotes, which the provider adds; "whole" (any other provider) the text as it
# is, for APIs that split it themselves. Only powerdns is tested against a real server.
TXT_FORMATS: dict[str, str] = {
    "powerdns": "quoted",  # lexicon quotes only content that is not quoted already
    "route53": "inner",  # lexicon wraps the content in one pair of quotes
    "googleclouddns": "inner",
}
DEFAULT_FORMAT = "whole"
SECRET_KEY = re.compile(r"^auth|token|secret|key|pass|credential")  # option names to hide
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def txt_for(form: str, text: str) -> str:
    if form == "whole":
        return text
    quoted = txt_content(text)
    return quoted if form == "quoted" else quoted[1:-1]


def plain(content: str) -> str:
    """A listed TXT record's text, however the provider quoted and split it."""
    if '"' not in content:
        return content
    if not content.startswith('"'):
        content = '"' + content + '"'  # a provider that stripped the outer quotes
    parts = QUOTED.findall(content)
    return "".join(re.sub(r"\\(.)", r"\1", p) for p in parts)


class _Options:
    """lexicon's ConfigSource for one zone: the provider's options from the credentials
    file, the zone, and the TTL of the change being made."""

    def __init__(self, provider: str, zone: str, options: Mapping[str, Any]) -> None:
        self.provider = provider
        self.zone = zone
        self.options = options
        self.ttl = 3600

    def resolve(self, key: str) -> Any:
        parts = key.split(":")
        if len(parts) == 3 and parts[1] == self.provider:
            return self.options.get(parts[2])
        return {
            "lexicon:domain": self.zone,
            "lexicon:provider_name": self.provider,
            "lexicon:ttl": self.ttl,
        }.get(key)


class LexiconPublisher(PerZone):
    def __init__(
        self,
        provider: str,
        provider_class: type[Provider],
        options: Mapping[str, Any],
        txt_format: str = "auto",
        timeout: float = 10.0,
    ) -> None:
        self.provider = provider
        self.provider_class = provider_class
        self.options = dict(options)
        self.form = (
            TXT_FORMATS.get(provider, DEFAULT_FORMAT) if txt_format == "auto" else txt_format
        )
        self.timeout = timeout

    @property
    def where(self) -> str:
        return f"lexicon {self.provider}"

    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str:
        self._bounded(
            zone, lambda source, client, step: self._changes(source, client, step, changes)
        )
        return self.where

    def zone_problem(self, zone: str) -> str | None:
        try:
            self._bounded(zone, lambda source, client, step: None)  # authenticate() finds it
        except PublishError as exc:
            if exc.code in SAID_NO:
                return exc.reason
            raise
        return None

    def _changes(
        self,
        source: _Options,
        client: Provider,
        step: Callable[[], None],
        changes: Sequence[RecordChange],
    ) -> None:
        last = {c.name.rstrip(".").lower(): c for c in changes}  # the last change of a name wins
        for name, change in last.items():
            source.ttl = change.ttl
            current = [str(r.get("content", "")) for r in client.list_records("TXT", name)]
            step()
            if change.text is not None and [plain(c) for c in current] == [change.text]:
                continue
            if current:
                client.delete_record(None, "TXT", name, None)
                step()
            if change.text is not None:
                client.create_record("TXT", name, txt_for(self.form, change.text))
                step()

    def _bounded(
        self, zone: str, work: Callable[[_Options, Provider, Callable[[], None]], None]
    ) -> None:
        """`work` on an authenticated provider in a thread of its own, each provider call
        given `timeout` seconds: lexicon's providers set none on their requests, and a
        hung API must not hold the daemon's tick. A call that overruns is abandoned (its
        thread ends with the request); the batch is retried and sending it again is safe."""
        events: queue.Queue[tuple[bool, BaseException | None]] = queue.Queue()  # (done, error)

        def run() -> None:
            source = _Options(self.provider, zone.rstrip("."), self.options)
            try:
                client = self.provider_class(_resolver(source))
                client.authenticate()
                events.put((False, None))
                try:
                    work(source, client, lambda: events.put((False, None)))
                finally:
                    client.cleanup()
            except BaseException as exc:  # handed to the caller, who makes it one line
                events.put((True, exc))
            else:
                events.put((True, None))

        threading.Thread(target=run, name=f"lexicon-{zone}", daemon=True).start()
        while True:
            try:
                done, error = events.get(timeout=self.timeout)
            except queue.Empty:
                raise PublishError(
                    f"timeout after {self.timeout:g}s waiting for {self.where} on zone {zone}",
                    Reason.DNS_TIMEOUT,
                ) from None
            if error is not None:
                raise self._failure(error, zone)
            if done:
                return

    def _failure(self, exc: BaseException, zone: str) -> PublishError:
        if isinstance(exc, PublishError):
            return exc
        status = getattr(getattr(exc, "response", None), "status_code", None)
        said = self._redacted(str(exc)) or type(exc).__name__
        if status in (401, 403) or type(exc).__name__ == "AuthenticationError":
            return PublishError(
                f"{self.where} refused the credentials"
                + (f" (HTTP {status})" if status else "")
                + f" for zone {zone}: check credentials_file",
                Reason.DNS_CREDENTIAL,
            )
        if status == 404:
            return PublishError(
                f"{self.where} has no zone {zone} (HTTP 404): create it there, or give the "
                "zone to another backend",
                Reason.DNS_NOTAUTH,
            )
        if "Timeout" in type(exc).__name__ or isinstance(exc, TimeoutError):
            return PublishError(
                f"{self.where} timed out on zone {zone}: {said}", Reason.DNS_TIMEOUT
            )
        if "Connection refused" in said:
            return PublishError(f"connection refused by {self.where}'s API (zone {zone})")
        return PublishError(f"{self.where} failed on zone {zone}: {type(exc).__name__}: {said}")

    def _redacted(self, text: str) -> str:
        """One line, short, without a URL's query or any option's value (credentials)."""
        text = re.sub(r"(https?://[^\s?'\"]+)\?[^\s'\")]*", r"\1?...", " ".join(text.split()))
        for key, value in self.options.items():
            if SECRET_KEY.search(key) and isinstance(value, str) and len(value) >= 4:
                text = text.replace(value, "***")
        return text[:300]


def _resolver(source: _Options) -> ConfigResolver:
    from lexicon.config import ConfigSource

    class Source(ConfigSource):
        def resolve(self, config_key: str) -> Any:
            return source.resolve(config_key)

    return _new_resolver().with_config_source(Source())


def _new_resolver() -> ConfigResolver:
    from lexicon.config import ConfigResolver

    return ConfigResolver()  # type: ignore[no-untyped-call]  # lexicon leaves __init__ bare


@contextlib.contextmanager
def _offline_suffix_list() -> Iterator[None]:
    """lexicon's Client guesses a zone from the public suffix list (tldextract), which it
    downloads on first use. rotator knows its zones: the list bundled with tldextract is
    used (no request, nothing cached in the home directory), unless the environment says
    otherwise."""
    wanted = {"TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "", "TLDEXTRACT_CACHE_PATH": ""}
    added = [k for k in wanted if k not in os.environ]
    os.environ.update({k: wanted[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def provider_class(provider: str) -> type[Provider]:
    """The provider's class, found by lexicon's Client (the way lexicon supports); a
    provider it lacks, or whose packages are missing, is a ConfigError."""
    try:
        from lexicon.client import Client
        from lexicon.exceptions import ProviderNotAvailableError
    except ImportError:
        raise ConfigError(
            "kind lexicon needs dns-lexicon: pip install 'rotator[lexicon]'"
        ) from None
    config = _new_resolver().with_dict({"provider_name": provider, "domain": "rotator.invalid"})
    try:
        with _offline_suffix_list():
            return Client(config).provider_class
    except ProviderNotAvailableError as exc:
        raise ConfigError(f"lexicon provider {provider!r}: {exc}") from None
    except ImportError as exc:
        raise ConfigError(f"lexicon provider {provider!r} cannot be loaded: {exc}") from None


def from_config(cfg: BackendConfig) -> Publisher:
    assert isinstance(cfg, LexiconConfig)
    return LexiconPublisher(
        provider=cfg.provider,
        provider_class=provider_class(cfg.provider),
        options=provider_options(
            cfg.credentials_file, cfg.provider, f"backend {cfg.name}: the lexicon options"
        ),
        txt_format=cfg.txt_format,
        timeout=cfg.timeout,
    )
