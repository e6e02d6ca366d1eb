"""The operator status page: the timeline's segments from a key's events, the overview's
counts, problems and search, the identity page, and every value escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from rotator.app.onboarding import CustomerRow
from rotator.app.queries import Queries
from rotator.app.webhooks import Webhooks
from rotator.domain import events as ev
from rotator.ports.store import EventStore
from rotator.statuspage import (
    build_identity,
    build_overview,
    key_bar,
    render_identity,
    render_login,
    render_overview,
)
from rotator.statuspage.timeline import render_timeline

from .conftest import MakeEnv, UnitEnv
from .fakes import demo_policy
from .test_machine_model import at, ids, lifecycle

SVG = "{http://www.w3.org/2000/svg}"


def rotate(env: UnitEnv, domain: str = "example.com", seconds: int = 160) -> None:
    """A domain taken from its first key through rotations (demo: every 60s, a 30s drain)."""
    env.app.onboarding.add_identity(domain, "demo")
    for _ in range(seconds // 5):
        env.app.lifecycle.tick()
        env.clock.advance(5)


def test_segments_are_the_times_of_the_events_that_moved_the_key() -> None:
    bar = key_bar(lifecycle(), now=at(500))
    assert bar is not None
    got = [(s.state, s.start, s.end) for s in bar.segments]
    assert got == [
        ("generated", at(0), at(1)),
        ("published", at(1), at(2)),
        ("verified", at(2), at(5)),
        ("active", at(5), at(100)),
        # the drain window: DrainStarted to KeyRevoked (publishing the revocation at 130
        # changes no state)
        ("draining", at(100), at(131)),
        ("revoked", at(131), at(132)),
        ("destroyed", at(132), at(132)),  # the end: nothing of it is left after now
    ]
    assert not any(s.current for s in bar.segments)


def test_a_live_key_s_last_segment_runs_to_now() -> None:
    bar = key_bar(lifecycle()[:4], now=at(50))
    assert bar is not None
    last = bar.segments[-1]
    assert (last.state, last.start, last.end, last.current) == ("active", at(5), at(50), True)
    assert key_bar([ev.KeyPublished(**ids(1), server="ns")][:0], now=at(1)) is None


def test_timeline_svg_has_one_bar_per_key_and_the_drain_window_to_scale() -> None:
    second = [
        ev.KeyGenerated(**{**vars(lifecycle()[0]), "key_id": "k0002", "at": at(90)}),
    ]
    bars = [key_bar(lifecycle(), at(200)), key_bar(second, at(200))]
    svg = ET.fromstring(render_timeline([b for b in bars if b is not None], at(200)))
    groups = svg.findall(f"{SVG}g[@class='bar']")
    assert [g.get("data-key") for g in groups] == ["k0001", "k0002"]
    states = [r.get("data-state") for r in groups[0].findall(f"{SVG}rect")]
    assert states == [
        "generated", "published", "verified", "active", "draining", "revoked", "destroyed"
    ]  # fmt: skip
    assert [r.get("data-state") for r in groups[1].findall(f"{SVG}rect")] == ["generated"]
    rects = {r.get("data-state"): r for r in groups[0].findall(f"{SVG}rect")}
    active, draining = (float(rects[s].get("width", "0")) for s in ("active", "draining"))
    assert abs(draining / active - 31 / 95) < 0.01  # 31s of drain against 95s active
    draining_title = rects["draining"].find(f"{SVG}title")
    assert draining_title is not None and "12:01:40" in (draining_title.text or "")
    legend = " ".join(t.text or "" for t in svg.iter(f"{SVG}text"))
    assert "drain window" in legend


def test_overview_counts_by_state_and_finds_by_domain_or_customer(env: UnitEnv) -> None:
    rotate(env)
    env.app.onboarding.add_customers([CustomerRow("Acme Corp", "acme.com", "customer-key", "demo")])
    view = build_overview(env.app, env.clock.now())
    counts = dict(view.counts)
    assert counts["active"] == 1 and counts["destroyed"] == 2
    assert view.identities == 2 and view.matches == ()
    page = render_overview(view)
    assert '<td class="num">2</td>' in page and "No problems." in page
    assert [m.identity for m in build_overview(env.app, env.clock.now(), "EXAMPLE").matches] == [
        "example.com"
    ]
    found = build_overview(env.app, env.clock.now(), "acme corp")
    assert [(m.identity, m.customer) for m in found.matches] == [("acme.com", "Acme Corp")]
    assert 'href="/identity?name=acme.com"' in render_overview(found)
    assert build_overview(env.app, env.clock.now(), "nowhere").matches == ()
    assert 'id="matches">None.' in render_overview(build_overview(env.app, env.clock.now(), "zzz"))


def test_a_failing_step_then_parked_with_its_reason_and_since_when(make_env: MakeEnv) -> None:
    env = make_env({"demo": demo_policy(retry={"park_after": 3})})
    env.dns.fail_publish = "REFUSED by the primary"
    env.app.onboarding.add_identity("example.com", "demo")
    first_failure = env.clock.now()
    env.app.lifecycle.tick()
    problems = build_overview(env.app, env.clock.now()).problems
    assert [(p.kind, p.name, p.since) for p in problems] == [
        ("failing", "example.com", first_failure)
    ]
    assert "REFUSED" in problems[0].reason and problems[0].code == "dns-update-failed"
    for _ in range(3):
        env.clock.advance(10)
        env.app.lifecycle.tick()
    (parked,) = build_overview(env.app, env.clock.now()).problems
    assert (parked.kind, parked.since) == ("parked", first_failure)
    page = render_overview(build_overview(env.app, env.clock.now()))
    assert "parked" in page and "dns-update-failed" in page and "2026-11-24 12:00:00 UTC" in page
    identity = build_identity(env.app, "example.com", env.clock.now())
    assert identity is not None and [p.kind for p in identity.problems] == ["parked"]


@dataclass
class Held:
    text: str | None

    def held(self) -> str | None:
        return self.text


@dataclass
class Reader:
    store: EventStore
    queries: Queries
    safety: Held
    webhooks: Webhooks


def test_the_safety_valve_is_a_problem_of_the_whole_fleet(env: UnitEnv) -> None:
    paced = "paced: 3 scheduled replacements and revocations wait their turn"
    reader = Reader(env.store, env.app.queries, Held(paced), env.app.webhooks)
    (problem,) = build_overview(reader, env.clock.now()).problems
    assert (problem.kind, problem.name, problem.reason) == ("paced", "", paced)
    assert (
        build_overview(
            Reader(env.store, env.app.queries, Held(None), env.app.webhooks), env.clock.now()
        ).problems
        == ()
    )


def test_a_parked_webhook_is_a_problem_of_the_whole_fleet(env: UnitEnv) -> None:
    sub = "whk_0123456789abcdef"
    env.app.onboarding.add_identity("example.com", "demo")
    env.ctx.recorder.append(
        [ev.WebhookSubscribed(at=env.clock.now(), actor="alice", subscription=sub,
                              url="https://hooks.example/r?token=hush", types=("key.rotated",))]
    )  # fmt: skip
    env.clock.advance(30)
    (parked,) = env.ctx.recorder.append(
        [ev.WebhookParked(at=env.clock.now(), subscription=sub, position=2,
                          error="hooks.example: timed out", attempts=7)]
    )  # fmt: skip
    env.clock.advance(600)
    (problem,) = build_overview(env.app, env.clock.now()).problems
    assert (problem.kind, problem.name, problem.since) == ("webhook parked", "", parked.event.at)
    assert sub in problem.reason and "timed out" in problem.reason
    page = render_overview(build_overview(env.app, env.clock.now()))
    assert "webhook parked" in page and "2026-11-24 12:00:30 UTC" in page
    assert "hush" not in page and "hooks.example/r" not in page  # the URL may hold a token
    identity = build_identity(env.app, "example.com", env.clock.now())
    assert identity is not None and identity.problems == ()  # the fleet's, not the identity's
    env.app.webhooks.resume(sub, "alice", "receiver fixed")
    assert build_overview(env.app, env.clock.now()).problems == ()


def test_customer_names_and_queries_stay_text(env: UnitEnv) -> None:
    evil = "<script>alert('x')</script>"
    env.app.onboarding.add_customers([CustomerRow(evil, "evil.com", "customer-key", "demo")])
    page = render_overview(build_overview(env.app, env.clock.now(), "<script>"))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert 'value="&lt;script&gt;"' in page  # the query echoed into the form
    identity = build_identity(env.app, "evil.com", env.clock.now())
    assert identity is not None and "<script>" not in render_identity(identity)
    login = render_login('bad token"><script>')
    assert "<script>" not in login and 'name="token"' in login


def test_identity_page_shows_every_key_and_its_history(env: UnitEnv) -> None:
    rotate(env)
    view = build_identity(env.app, "Example.com.", env.clock.now())
    assert view is not None
    keys = env.store.list_keys("example.com")
    assert [b.key_id for b in view.bars] == [
        k.key_id for k in sorted(keys, key=lambda k: k.created_at)
    ]
    assert [b.state for b in view.bars] == ["destroyed", "destroyed", "active"]
    drained = view.bars[0]
    times = {
        type(s.event).__name__: s.event.at
        for s in env.store.events()
        if getattr(s.event, "key_id", None) == drained.key_id
    }
    (drain,) = [s for s in drained.segments if s.state == "draining"]
    assert (drain.start, drain.end) == (times["DrainStarted"], times["KeyRevoked"])
    page = render_identity(view)
    assert page.count('<g class="bar"') == 3
    assert "DrainStarted" in page and view.summary.active_selector in page
    assert build_identity(env.app, "nosuch.com", env.clock.now()) is None
