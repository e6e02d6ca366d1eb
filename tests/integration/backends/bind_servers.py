"""kind = "rfc2136": a BIND primary taking UPDATEs and a BIND secondary fed by NOTIFY/IXFR."""

from __future__ import annotations

from pathlib import Path

from rotator.demo.localdns import BindPair

ZONE = "dkim.rfc2136.test"
UNSERVED = "elsewhere.rfc2136.test"


class BindServers:
    kind = "rfc2136"
    zone = ZONE
    unserved_zone = UNSERVED

    def __init__(self, base: Path) -> None:
        self.pair = BindPair(base, zones=(ZONE,)).start()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return list(self.pair.addresses)

    def server(self, which: str) -> tuple[str, int]:
        return self.pair.server(which)

    def backend_table(self, workdir: Path, wrong_credential: bool = False) -> str:
        secret = workdir / "bind.tsig"
        secret.write_text(
            "bm90LXRoZS1zZWNyZXQtbm90LXRoZS1zZWNyZXQtbm90LXRoZXM=\n"
            if wrong_credential
            else self.pair.tsig_secret + "\n"
        )
        secret.chmod(0o600)
        nameservers = ", ".join(f'"{ip}:{port}"' for ip, port in self.addresses)
        return (
            f'[[dns.backends]]\nname = "bind"\nkind = "rfc2136"\n'
            f'zones = ["{ZONE}", "{UNSERVED}"]\nprimary = "{self.pair.primary}:{self.pair.port}"\n'
            f'tsig_name = "{self.pair.tsig_name}"\ntsig_secret_file = "{secret}"\n'
            f"nameservers = [{nameservers}]\ntimeout = 3\n"
        )

    def stop(self) -> None:
        self.pair.stop()


def start_bind(base: Path) -> BindServers:
    return BindServers(base)
