"""`rotator demo`: the daemon on the demo policy against a local BIND primary + secondary.

Starts two real `named` processes on loopback (127.0.0.1 and 127.0.0.2, one high port,
NOTIFY + IXFR between them), writes a config beside them, adds two domains (one with its
own zone, one NS-delegated `myesp._domainkey` zone) and runs the daemon, printing the key
table as keys move generated -> ... -> destroyed. Everything it starts is stopped at exit.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..bootstrap import build
from ..config.settings import load_config
from ..daemon import Daemon
from ..domain.errors import ConfigError
from ..logging import configure
from ..ports import LogFilter
from ..timeutil import iso
from .localdns import BindPair

DOMAINS = (("example.test", "example.test"), ("customer.test", "myesp._domainkey.customer.test"))


def find_policies() -> Path:
    """policies/ of the source checkout this package runs from (the quick start installs it
    in editable mode), or ./policies."""
    for candidate in (Path(__file__).resolve().parents[2] / "policies", Path("policies")):
        if (candidate / "demo.toml").is_file():
            return candidate
    raise ConfigError("policies/demo.toml not found; run the demo from the rotator checkout")


def write_config(workdir: Path, bind: BindPair, policy_dir: Path) -> Path:
    cfg = workdir / "rotator.toml"
    cfg.write_text(
        f"""# written by `rotator demo`
database = "rotator.db"
key_dir = "keys"
policy_dir = "{policy_dir}"
tick_seconds = 0.5

[dns]
{bind.dns_config()}
[signer]
key_table = "opendkim/KeyTable"
signing_table = "opendkim/SigningTable"
reload = ["sh", "-c", "date >> {workdir}/opendkim/reloads.log"]
"""
    )
    cfg.chmod(0o600)  # it holds the TSIG secret
    return cfg


def status_table(daemon: Daemon) -> Table:
    store = daemon.app.store
    table = Table("domain", "selector", "state", "next action", title="keys")
    for k in store.list_keys():
        nxt = (
            k.next_action.value
            if k.next_action
            else ("rotate" if k.state.value == "active" else "-")
        )
        table.add_row(k.domain, k.selector, k.state.value, nxt)
    return table


def run_demo(seconds: float, workdir: Path | None) -> None:
    console = Console(stderr=True)
    keep = workdir is not None
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rotator-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    policy_dir = find_policies()
    zones = [zone for _, zone in DOMAINS]
    with BindPair(work / "bind", zones=zones) as bind:
        console.print(
            f"[bold]BIND primary {bind.primary}:{bind.port} + secondary "
            f"{bind.secondary}:{bind.port}[/] (NOTIFY/IXFR, TSIG key {bind.tsig_name})"
        )
        cfg_path = write_config(work, bind, policy_dir)
        config = load_config(cfg_path)
        configure("console")
        app = build(config, command=False)
        for domain, zone in DOMAINS:
            if app.store.identity(domain) is None:
                app.onboarding.add_identity(
                    domain, "demo", zone, actor="demo", reason="quick start"
                )
        daemon = Daemon(app)
        stop = threading.Event()

        def show() -> None:
            while not stop.wait(10):
                console.print(status_table(daemon))

        printer = threading.Thread(target=show, daemon=True)
        printer.start()
        try:
            daemon.run(duration=seconds)
        finally:
            stop.set()
        console.print(status_table(daemon))
        first = next(iter(app.store.list_keys()), None)
        if first is not None:
            console.print(f"\n[bold]audit log of key {first.selector} ({first.domain})[/]")
            for stored in app.store.events(LogFilter(key_id=first.key_id)):
                e = stored.event
                console.print(f"  {iso(e.at)[11:23]}  {type(e).__name__}")
        n, problem = app.store.verify_chain()
        console.print(f"hash chain: {problem or f'intact over {n} events'}")
        if keep:
            console.print(
                f"\nconfig: {cfg_path}\n  rotator --config {cfg_path} log\n"
                f"  rotator --config {cfg_path} status --all"
            )
        else:
            console.print("(nameservers stopped, files removed; --workdir DIR keeps them)")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
