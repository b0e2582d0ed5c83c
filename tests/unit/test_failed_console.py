"""The failed page's API through aiohttp's test client, Kafka replaced by an in-memory
backend: the two-step actions, their history, bad input, and refusal of cross-site POSTs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from status import console, web
from status.service import StatusService
from streams.errors import KafkaUnavailable
from streams.replay import RESOLVED, DeadLetterEntry, open_entries
from streams.settings import Settings
from tests.unit.test_failed_view import entry
from tests.unit.test_status_web import FakeProbe, make_settings


class FakeBackend:
    def __init__(self, entries: list[DeadLetterEntry]) -> None:
        self.by_id = {e.id: e for e in entries}
        self.state: dict[str, dict[str, Any]] = {}
        self.replayed: list[tuple[list[str], float | None, str]] = []
        self.forgotten: list[tuple[list[str], str]] = []
        self.refreshes = 0
        self.fail: str | None = None
        self.paused: list[tuple[list[str], bool, str, str]] = []
        self.backlog = {0: 3, 1: 2}
        self.members = 0
        self.cleared: list[str] = []

    def refresh(self, max_age_s: float) -> None:
        self.refreshes += 1
        if self.fail:
            raise KafkaUnavailable(self.fail)

    def open(self) -> list[DeadLetterEntry]:
        return open_entries(self.by_id, self.state)

    def known(self) -> Mapping[str, DeadLetterEntry]:
        return self.by_id

    def states(self) -> Mapping[str, dict[str, Any]]:
        return self.state

    def replay(self, entries: list[DeadLetterEntry], rate: float | None, by: str,
               progress: Callable[[DeadLetterEntry], None]) -> int:
        self.replayed.append(([e.id for e in entries], rate, by))
        for e in entries:
            self.state[e.id] = {"status": RESOLVED, "how": "replay", "by": by}
            progress(e)
        return len(entries)

    def resolve(self, ids: list[str], by: str) -> int:
        self.forgotten.append((ids, by))
        for i in ids:
            self.state[i] = {"status": RESOLVED, "how": "forget", "by": by}
        return len(ids)

    def record(self, action: dict[str, Any], key: str | None) -> str:
        key = key or f"action:{len(self.state):04d}"
        at = action.get("finished_at") or action["started_at"]
        self.state[key] = {**action, "type": "action", "key": key, "at": at}
        return key

    def pause(self, topics: list[str], paused: bool, by: str, reason: str) -> None:
        if self.fail:
            raise KafkaUnavailable(self.fail)
        self.paused.append((topics, paused, by, reason))

    def clear(self, topic: str, apply: bool) -> dict[int, int]:
        if apply and self.members:
            raise KafkaUnavailable("cannot move offsets of group 'g' (GROUP_NOT_EMPTY); Kafka refuses "
                                   "while workers are members: stop them first (prophoto-ingest restart)")
        counts = dict(self.backlog)
        if apply:
            self.cleared.append(topic)
            self.backlog = {p: 0 for p in self.backlog}
        return counts

    def close(self) -> None:
        pass


Make = Callable[..., Any]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[TestClient[Any, Any]] = []

    async def build(backend: FakeBackend, settings: Settings | None = None) -> TestClient[Any, Any]:
        s = settings or make_settings()
        app = web.create_app(s, StatusService(s, FakeProbe(s)), sample=False, failed_backend=backend)
        c: TestClient[Any, Any] = TestClient(TestServer(app))
        await c.start_server()
        made.append(c)
        return c

    yield build
    for c in made:
        await c.close()


def origin(c: TestClient[Any, Any]) -> str:
    return f"http://{c.host}:{c.port}"


async def csrf(c: TestClient[Any, Any], headers: dict[str, str] | None = None) -> dict[str, str]:
    r = await c.get("/api/session", headers=headers or {})
    assert r.status == 200
    body = await r.json()
    return {**(headers or {}), "Origin": origin(c), "X-CSRF-Token": body["csrf"]}


async def settle(c: TestClient[Any, Any]) -> list[dict[str, Any]]:
    for _ in range(100):
        r = await (await c.get("/api/actions")).json()
        if r["running"] is None:
            return list(r["actions"])
        await asyncio.sleep(0.02)
    raise AssertionError("the action did not end")


async def test_list_and_detail(make: Make) -> None:
    c = await make(FakeBackend([entry(i) for i in range(30)]))
    r = await c.get("/api/failed", params={"per_page": "10", "page": "2"})
    assert r.status == 200
    body = await r.json()
    assert (body["total"], body["pages"], len(body["items"])) == (30, 3, 10)
    assert body["items"][0]["id"] == "id0019"
    d = await c.get("/api/failed/id0003")
    assert d.status == 200 and (await d.json())["value"]["text"] == "{}"
    missing = await c.get("/api/failed/id9999")
    assert missing.status == 404 and "no dead letter id9999" in (await missing.json())["error"]
    bad = await c.get("/api/failed/" + "x" * 70)
    assert bad.status == 400
    page = await c.get("/failed")
    assert page.status == 200 and "failed.js" in await page.text()


@pytest.mark.parametrize("query", ["page=-1", "per_page=1000", "since=soon", "uuid=abc", "topic=x",
                                   "poison=2", "colour=red"])
async def test_bad_queries_are_400_with_a_message(make: Make, query: str) -> None:
    c = await make(FakeBackend([entry(1)]))
    r = await c.get("/api/failed?" + query)
    assert r.status == 400
    assert (await r.json())["error"]


async def test_replay_dry_run_then_confirm_then_history(make: Make) -> None:
    backend = FakeBackend([entry(1, message="truncated"), entry(2, message="fine"),
                           entry(3, message="truncated", replay_of="id0000")])
    c = await make(backend)
    h = await csrf(c)
    target = {"filter": {"error": "truncated"}}
    dry = await c.post("/api/failed/replay", json={**target, "dry_run": True}, headers=h)
    assert dry.status == 200
    d = await dry.json()
    assert (d["count"], d["ids"], d["skipped_poison"]) == (1, ["id0001"], ["id0003"])
    assert backend.replayed == [] and backend.state == {}  # a dry run does nothing

    wrong = await c.post("/api/failed/replay", headers=h,
                         json={**target, "confirm": {"count": 2, "selection": d["selection"]}})
    assert wrong.status == 409 and "changed since the dry run" in (await wrong.json())["error"]
    ok = await c.post("/api/failed/replay", headers=h, json={
        **target, "rate": 5, "confirm": {"count": d["count"], "selection": d["selection"]}})
    assert ok.status == 202, await ok.text()
    history = await settle(c)
    assert backend.replayed == [(["id0001"], 5.0, "anonymous")]
    assert [(a["action"], a["count"], a["done"], a["state"], a["by"]) for a in history] == [
        ("replay", 1, 1, "done", "anonymous")]
    # the same confirm again: what it named is resolved now, so the selection changed
    again = await c.post("/api/failed/replay", headers=h, json={
        **target, "confirm": {"count": d["count"], "selection": d["selection"]}})
    assert again.status == 409
    listing = await (await c.get("/api/failed")).json()
    assert sorted(i["id"] for i in listing["items"]) == ["id0002", "id0003"]


async def test_forget_by_id_and_unknown_ids(make: Make) -> None:
    backend = FakeBackend([entry(1), entry(2)])
    c = await make(backend)
    h = await csrf(c)
    dry = await (await c.post("/api/failed/forget", json={"ids": ["id0002", "nope"], "dry_run": True},
                              headers=h)).json()
    assert (dry["count"], dry["unknown"]) == (1, ["nope"])
    r = await c.post("/api/failed/forget", headers=h, json={
        "ids": ["id0002", "nope"], "confirm": {"count": 1, "selection": dry["selection"]}})
    assert r.status == 202
    [a] = await settle(c)
    assert (a["action"], a["done"], a["ids"]) == ("forget", 1, ["id0002"])
    assert backend.forgotten == [(["id0002"], "anonymous")]


@pytest.mark.parametrize(("body", "message"), [
    ({"filter": {"error": "x"}}, "takes two steps"),
    ({"dry_run": True}, "name what to act on"),
    ({"ids": "id0001", "dry_run": True}, "ids"),
    ({"ids": ["id0001"], "dry_run": "yes"}, "dry_run"),
    ({"ids": ["id0001"], "dry_run": True, "rate": -1}, "rate"),
    ({"ids": ["id0001"], "dry_run": True, "extra": 1}, "extra"),
    ({"filter": {"since": "later"}, "dry_run": True}, "since="),
    ({"filter": {"topic": 3}, "dry_run": True}, "topic"),
    ({"filter": {"since": "99999999999999d"}, "dry_run": True}, "further back than any date"),
    ({"filter": {"poison": 2}, "dry_run": True}, "poison"),
    ({"ids": ["id0001"], "dry_run": True, "rate": float("nan")}, "rate"),
    ({"ids": [7], "dry_run": True}, "ids"),
])
async def test_bad_action_bodies_are_400(make: Make, body: dict[str, Any], message: str) -> None:
    c = await make(FakeBackend([entry(1)]))
    r = await c.post("/api/failed/replay", json=body, headers=await csrf(c))
    assert r.status == 400
    assert message in (await r.json())["error"]


async def test_not_json_is_400(make: Make) -> None:
    c = await make(FakeBackend([entry(1)]))
    h = await csrf(c)
    r = await c.post("/api/failed/forget", data=b"{not json", headers=h)
    assert r.status == 400 and "bad request body" in (await r.json())["error"]
    r = await c.post("/api/failed/forget", data=b"[1, 2]", headers=h)
    assert r.status == 400


async def test_cross_site_posts_are_refused(make: Make) -> None:
    backend = FakeBackend([entry(1)])
    c = await make(backend)
    h = await csrf(c)
    body = {"ids": ["id0001"], "dry_run": True}
    evil = await c.post("/api/failed/forget", json=body, headers={**h, "Origin": "http://evil.example"})
    assert evil.status == 403 and "cross-site" in (await evil.json())["error"]
    evil_ref = await c.post("/api/failed/forget", json=body, headers={
        "X-CSRF-Token": h["X-CSRF-Token"], "Referer": "https://evil.example/x"})
    assert evil_ref.status == 403 and "cross-site" in (await evil_ref.json())["error"]
    no_origin = await c.post("/api/failed/forget", json=body, headers={"X-CSRF-Token": h["X-CSRF-Token"]})
    assert no_origin.status == 403 and "Origin" in (await no_origin.json())["error"]
    no_token = await c.post("/api/failed/forget", json=body, headers={"Origin": origin(c)})
    assert no_token.status == 403 and "missing CSRF token" in (await no_token.json())["error"]
    forged = await c.post("/api/failed/forget", json=body, headers={**h, "X-CSRF-Token": "0" * 64})
    assert forged.status == 403 and "does not match" in (await forged.json())["error"]
    c.session.cookie_jar.clear()  # the token belongs to the session cookie it came with
    other = await c.post("/api/failed/forget", json=body, headers=h)
    assert other.status == 403
    assert backend.refreshes == 0  # refused before anything was read, let alone done
    ok = await c.post("/api/failed/forget", json=body, headers=await csrf(c))
    assert ok.status == 200 and (await ok.json())["count"] == 1


async def test_a_token_guards_the_api_and_names_who_acted(make: Make) -> None:
    backend = FakeBackend([entry(1)])
    c = await make(backend, make_settings(token="tok-Zq81"))
    assert (await c.get("/failed")).status == 200  # the page itself asks for the token
    assert (await c.get("/api/failed")).status == 401
    assert (await c.get("/api/session")).status == 401
    auth = {"Authorization": "Bearer tok-Zq81"}
    h = await csrf(c, auth)
    no_auth = {k: v for k, v in h.items() if k != "Authorization"}
    assert (await c.post("/api/failed/forget", json={"ids": ["id0001"], "dry_run": True},
                         headers=no_auth)).status == 401
    dry = await (await c.post("/api/failed/forget", json={"ids": ["id0001"], "dry_run": True},
                              headers=h)).json()
    r = await c.post("/api/failed/forget", headers=h, json={
        "ids": ["id0001"], "confirm": {"count": 1, "selection": dry["selection"]}})
    assert r.status == 202
    by = (await r.json())["by"]
    assert by.startswith("token:") and "tok-Zq81" not in json.dumps(await r.json())
    for _ in range(100):
        if backend.forgotten:
            break
        await asyncio.sleep(0.02)
    assert backend.forgotten == [(["id0001"], by)]


async def test_kafka_down_is_503_with_the_reason(make: Make) -> None:
    backend = FakeBackend([entry(1)])
    backend.fail = "no broker answered at 127.0.0.1:9"
    c = await make(backend)
    r = await c.get("/api/failed")
    assert r.status == 503 and "no broker answered" in (await r.json())["error"]
    r = await c.post("/api/failed/replay", json={"ids": ["id0001"], "dry_run": True}, headers=await csrf(c))
    assert r.status == 503 and "nothing was done" in (await r.json())["error"]


async def test_one_action_at_a_time(make: Make) -> None:
    backend = FakeBackend([entry(1), entry(2)])
    c = await make(backend)
    c.app[console.CONSOLE].running = console.Running("action:x", {
        "action": "replay", "count": 5, "by": "anonymous", "started_at": "2026-12-01T10:00"}, done=2)
    h = await csrf(c)
    dry = await (await c.post("/api/failed/forget", json={"ids": ["id0001"], "dry_run": True},
                              headers=h)).json()
    r = await c.post("/api/failed/forget", headers=h, json={
        "ids": ["id0001"], "confirm": {"count": 1, "selection": dry["selection"]}})
    assert r.status == 409 and "another action is running: replay of 5" in (await r.json())["error"]
    assert backend.forgotten == []


async def test_a_loopback_service_without_token_answers_only_loopback_names(make: Make) -> None:
    # DNS rebinding: evil.example resolves to 127.0.0.1; its page is same-origin to itself.
    c = await make(FakeBackend([entry(1)]))
    h = await csrf(c)
    rebound = {"Host": f"evil.example:{c.port}", "Origin": f"http://evil.example:{c.port}"}
    r = await c.get("/api/session", headers=rebound)
    assert r.status == 403 and "evil.example" in (await r.json())["error"]
    assert (await c.get("/api/failed", headers=rebound)).status == 403
    r = await c.post("/api/failed/forget", json={"ids": ["id0001"], "dry_run": True},
                     headers={**h, **rebound})
    assert r.status == 403
    assert (await c.get("/api/failed", headers={"Host": f"localhost:{c.port}"})).status == 200
    # a service with a token, or bound beyond loopback, has chosen whom it trusts
    c2 = await make(FakeBackend([entry(1)]), make_settings(token="t0k"))
    r = await c2.get("/api/failed", headers={"Host": "status.example", "Authorization": "Bearer t0k"})
    assert r.status == 200


async def test_a_service_beyond_loopback_without_a_token_takes_no_actions(make: Make) -> None:
    """Bound to 0.0.0.0 (the deploy files' choice) with no token, the Origin and CSRF checks
    stop browsers but not a script on the network that fetches a session first. Every
    action is refused with what to set; reading still works (the operator sees why)."""
    backend = FakeBackend([entry(1)])
    c = await make(backend, make_settings(host="0.0.0.0"))
    h = await csrf(c)
    for path, body in (("/api/failed/forget", {"ids": ["id0001"], "dry_run": True}),
                       ("/api/failed/replay", {"ids": ["id0001"], "dry_run": True}),
                       ("/api/topics/pause", {"topic": "ingest-preview"}),
                       ("/api/topics/clear", {"topic": "ingest-preview", "dry_run": True})):
        r = await c.post(path, json=body, headers=h)
        assert r.status == 403, path
        assert "INGEST_STATUS__TOKEN" in (await r.json())["error"], path
    assert backend.forgotten == [] and backend.paused == []
    assert (await c.get("/api/failed")).status == 200
    # with a token, the same service acts
    c2 = await make(backend, make_settings(host="0.0.0.0", token="t0k"))
    auth = {"Authorization": "Bearer t0k"}
    h2 = await csrf(c2, auth)
    r = await c2.post("/api/topics/pause", json={"topic": "ingest-preview"}, headers={**h2, **auth})
    assert r.status == 200


async def test_an_action_left_running_by_a_stopped_service_shows_unfinished(make: Make) -> None:
    backend = FakeBackend([entry(1)])
    backend.state["action:old"] = {"type": "action", "key": "action:old", "action": "replay", "count": 9,
                                   "state": "running", "at": "2026-12-01T09:00", "by": "anonymous"}
    c = await make(backend)
    [a] = (await (await c.get("/api/actions")).json())["actions"]
    assert a["state"] == "unfinished"


async def test_pause_and_continue_from_the_page_are_guarded_and_recorded(make: Make) -> None:
    backend = FakeBackend([])
    c = await make(backend)
    h = await csrf(c)
    body = {"topic": "ingest-preview", "reason": "storage maintenance"}
    evil = await c.post("/api/topics/pause", json=body, headers={**h, "Origin": "http://evil.example"})
    assert evil.status == 403 and backend.paused == []
    no_csrf = await c.post("/api/topics/pause", json=body, headers={"Origin": origin(c)})
    assert no_csrf.status == 403 and backend.paused == []
    bad = await c.post("/api/topics/pause", json={"topic": "nope"}, headers=h)
    assert bad.status == 400 and "nope" in (await bad.json())["error"]
    extra = await c.post("/api/topics/pause", json={**body, "all": True}, headers=h)
    assert extra.status == 400
    ok = await c.post("/api/topics/pause", json=body, headers=h)
    assert ok.status == 200 and (await ok.json())["topics"] == ["u-ingest-preview"]
    assert backend.paused == [(["u-ingest-preview"], True, "anonymous", "storage maintenance")]
    go = await c.post("/api/topics/continue", json={"topic": "preview"}, headers=h)
    assert go.status == 200 and backend.paused[-1][:2] == (["u-ingest-preview"], False)
    history = (await (await c.get("/api/actions")).json())["actions"]
    assert {a["action"] for a in history} >= {"pause", "continue"}
    backend.fail = "broker gone"
    down = await c.post("/api/topics/pause", json=body, headers=h)
    assert down.status == 503


async def test_clear_from_the_page_takes_two_steps_and_says_when_workers_must_stop(make: Make) -> None:
    backend = FakeBackend([])
    c = await make(backend)
    h = await csrf(c)
    one_step = await c.post("/api/topics/clear", json={"topic": "ingest-preview"}, headers=h)
    assert one_step.status == 400 and "two steps" in (await one_step.json())["error"]
    dry = await (await c.post("/api/topics/clear", json={"topic": "preview", "dry_run": True},
                              headers=h)).json()
    assert dry["total"] == 5 and dry["topic"] == "u-ingest-preview" and backend.cleared == []
    backend.members = 2  # workers are running: Kafka refuses to move the group's offsets
    busy = await c.post("/api/topics/clear", json={"topic": "preview", "confirm": {"total": 5}}, headers=h)
    body = await busy.json()
    assert busy.status == 409 and "workers must be stopped first" in body["error"], body
    assert backend.cleared == []
    backend.members = 0
    stale = await c.post("/api/topics/clear", json={"topic": "preview", "confirm": {"total": 4}}, headers=h)
    assert stale.status == 409 and "changed since the dry run" in (await stale.json())["error"]
    ok = await (await c.post("/api/topics/clear", json={"topic": "preview", "confirm": {"total": 5}},
                             headers=h)).json()
    assert ok["cleared"] == 5 and backend.cleared == ["u-ingest-preview"]
    evil = await c.post("/api/topics/clear", json={"topic": "preview", "dry_run": True},
                        headers={**h, "Origin": "http://evil.example"})
    assert evil.status == 403
    history = (await (await c.get("/api/actions")).json())["actions"]
    assert any(a["action"] == "clear" and a["count"] == 5 for a in history)
