"""The single OpenDKIM target that a config with the older [signer] table makes, as one
object with the one-target signer's interface (apply() raises SignerError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.probing.prober import Prober
from rotator.adapters.signers.target import SignerTarget, key_reader
from rotator.config.targets import ProbeConfig, TargetConfig
from rotator.domain.errors import SignerError
from rotator.ports import SignerChange, SigningEntry, TargetResult


class OpenDkimSigner:
    """The single OpenDKIM target an older config's [signer] table makes; apply() raises
    SignerError when the target fails, as the one-target signer used to."""

    def __init__(
        self, key_table: Path, signing_table: Path, reload: Any = (), timeout: float = 60.0
    ) -> None:
        config = TargetConfig(
            name="opendkim",
            format="opendkim",
            directory=key_table.parent,
            reload=tuple(reload),
            key_mode=0o600,
            table_mode=0o644,
            timeout=timeout,
            legacy_tables=(key_table, signing_table),
        )
        no_probe = Prober(ProbeConfig(), lambda zone, name: [])
        target = SignerTarget(config, key_reader(lambda k: key_table.parent / k), no_probe)
        self.fleet = SignerFleet([target], key_table.parent / ".lock")

    def locked(self) -> Any:
        return self.fleet.locked()

    def apply(
        self, entries: Any, check: Any = (), wipe: Any = lambda key_id: False
    ) -> list[TargetResult]:
        return self.fleet.apply(entries, check, wipe)

    def withdraw(self, removed: Any, entries: Any, wipe: bool) -> list[TargetResult]:
        return self.fleet.withdraw(removed, entries, wipe)

    def problems(self, entries: Any, beside: Any = ()) -> list[str]:
        return self.fleet.problems(entries, beside)

    def sweep(self) -> int:
        return self.fleet.sweep()

    def change(self, change: SignerChange, check: Any = ()) -> list[TargetResult]:
        return self.fleet.change(change, check)

    def stamp(self, position: int | None) -> None:
        self.fleet.stamp(position)

    def stamped(self) -> int | None:
        return self.fleet.stamped()

    def trust(self) -> None:
        self.fleet.trust()

    def write(self, entries: list[SigningEntry]) -> None:
        """apply(), raising SignerError when the target failed."""
        (result,) = self.fleet.apply(lambda: entries)
        if not result.ok:
            raise SignerError(result.detail)
