"""The failed page's pure half: filters and paging over entries, the detail view, and the
action records on the resolution topic (and that the readers of that topic pass them over)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from status import failed_view as fv
from status.deadletters import DeadLetterTally
from streams import headers as dl
from streams.replay import (
    ACTION_KEY_PREFIX,
    DeadLetterEntry,
    Filter,
    actions,
    apply_state,
    open_entries,
)
from streams.topics import Job, Topics

TOPICS = Topics(prefix="u-", partitions=2)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def entry(i: int, *, job: Job = Job.PREVIEW, error: str = "CorruptImage", message: str = "truncated",
          replay_of: str | None = None, value: bytes = b"{}", uuid: str | None = None,
          failed_at: datetime | None = None) -> DeadLetterEntry:
    at = (failed_at or NOW - timedelta(minutes=100 - i)).isoformat(timespec="milliseconds")
    return DeadLetterEntry(
        id=f"id{i:04d}", uuid=uuid or f"00000000-0000-4000-8000-{i:012d}", job=job,
        dlq_topic=TOPICS.dead_letter(job), dlq_partition=0, dlq_offset=i,
        source_topic=TOPICS.job(job), source_partition=0, source_offset=i,
        error_class=f"imaging.errors.{error}", error_message=message, reason="permanent",
        attempts=1, worker="host:1", first_failed_at=at, failed_at=at, replay_of=replay_of,
        key=(uuid or "k").encode(), value=value,
        headers={dl.H_EXC_STACK: "Traceback (most recent call last):\n  boom", dl.H_ID: f"id{i:04d}"},
    )


class Msg:
    """Just enough of a confluent Message for apply_state and the tally."""

    def __init__(self, key: str, value: bytes | None, topic: str = "u-ingest-dlq-state") -> None:
        self._k, self._v, self._t = key.encode(), value, topic

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def topic(self) -> str:
        return self._t

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0

    def timestamp(self) -> tuple[int, int]:
        return (0, -1)


def q(**params: str) -> fv.Query:
    return fv.parse_query(params, TOPICS, NOW)


def test_paging_is_newest_first_and_counts_the_whole_match() -> None:
    entries = open_entries({e.id: e for e in (entry(i) for i in range(45))}, {})
    first = fv.page_of(entries, q(per_page="20"))
    assert (first["total"], first["pages"], first["page"]) == (45, 3, 1)
    assert [r["id"] for r in first["items"][:2]] == ["id0044", "id0043"]
    last = fv.page_of(entries, q(per_page="20", page="3"))
    assert [r["id"] for r in last["items"]] == [f"id{i:04d}" for i in range(4, -1, -1)]
    beyond = fv.page_of(entries, q(per_page="20", page="9"))
    assert beyond["items"] == [] and beyond["total"] == 45


def test_filters_topic_error_since_uuid_poison() -> None:
    u = "0b6f0001-aaaa-4bbb-8ccc-0123456789ab"
    by_id = {e.id: e for e in [
        entry(1, job=Job.INGEST, error="SourceMissing", message="uploads/x.jpg is not there"),
        entry(2, message="premature end of JPEG", uuid=u),
        entry(3, replay_of="id0001", failed_at=NOW - timedelta(minutes=5)),
        entry(4, job=Job.ENHANCE, error="ExiftoolTimeout", failed_at=NOW - timedelta(hours=3)),
    ]}
    entries = open_entries(by_id, {})

    def ids(**params: str) -> list[str]:
        return sorted(r["id"] for r in fv.page_of(entries, q(**params))["items"])

    assert ids(topic="ingest") == ["id0001"]
    assert ids(topic="ingest-enhance,preview") == ["id0002", "id0003", "id0004"]
    assert ids(topic="u-ingest-preview") == ["id0002", "id0003"]
    assert ids(error="sourcemissing") == ["id0001"]
    assert ids(error="premature END") == ["id0002"]
    assert ids(since="1h") == ["id0003"]
    assert ids(since="2026-12-01T11:00") == ["id0003"]
    assert ids(uuid=u.upper()) == ["id0002"]  # the canonical form, as keys are written
    assert ids(poison="1") == ["id0003"]
    assert ids(poison="0") == ["id0001", "id0002", "id0004"]
    assert fv.parse_filter({"poison": 1}, TOPICS, NOW).poison is True  # as JSON sends it
    assert ids(topic="preview", poison="1", since="1h") == ["id0003"]


def test_an_entry_with_an_unreadable_time_is_not_since_anything() -> None:
    e = entry(1)
    e.failed_at = "not a time"
    assert fv.page_of([e], q(since="1h"))["total"] == 0
    assert fv.page_of([e], q())["total"] == 1


@pytest.mark.parametrize(("params", "message"), [
    ({"page": "0"}, "page=0: must be between 1"),
    ({"page": "two"}, "page='two': a whole number"),
    ({"per_page": "201"}, "per_page=201: must be between 1 and 200"),
    ({"since": "yesterday"}, "since='yesterday': use an ISO time"),
    ({"uuid": "not-a-uuid"}, "is not a UUID"),
    ({"topic": "ingest-traces"}, "is not a job topic"),
    ({"poison": "maybe"}, "poison: use 1 or 0"),
    ({"error": "x" * 201}, "error: at most 200 characters"),
    ({"owner": "o1", "folder": "x"}, "unknown filter field(s): folder"),
])
def test_bad_parameters_say_what_is_wrong(params: dict[str, str], message: str) -> None:
    with pytest.raises(fv.BadQuery, match=None) as exc:
        fv.parse_query(params, TOPICS, NOW)
    assert message in str(exc.value)


def test_resolved_entries_leave_the_list_and_a_tombstone_reopens() -> None:
    by_id = {e.id: e for e in (entry(i) for i in range(3))}
    states: dict[str, dict[str, Any]] = {}
    apply_state(states, Msg("id0001", json.dumps({"status": "resolved", "how": "forget"}).encode()))
    apply_state(states, Msg("id0002", json.dumps({"status": "replaying"}).encode()))
    assert [e.id for e in open_entries(by_id, states)] == ["id0000", "id0002"]
    apply_state(states, Msg("id0001", None))
    assert [e.id for e in open_entries(by_id, states)] == ["id0000", "id0001", "id0002"]


def test_detail_clips_the_value_and_walks_the_replay_lineage() -> None:
    big = b'{"path": "<script>x</script>"' + b"a" * 10_000 + b"}"
    first = entry(1, message="first")
    second = entry(2, replay_of="id0001", message="second")
    third = entry(3, replay_of="id0002", value=big)
    by_id = {e.id: e for e in (first, second, third)}
    states = {"id0001": {"status": "resolved", "how": "replay", "by": "cli"},
              "id0002": {"status": "resolved", "how": "replay", "by": "token:ab12cd34"}}
    open_entries(by_id, states)
    d = fv.detail(third, by_id, states)
    assert d["state"] == "open" and d["poison"] is True
    assert d["value"]["size"] == len(big) and d["value"]["truncated"] is True
    assert len(d["value"]["text"]) == fv.MAX_VALUE and d["value"]["text"].startswith('{"path": "<script>')
    assert [x["id"] for x in d["lineage"]] == ["id0002", "id0001"]
    assert d["lineage"][0]["by"] == "token:ab12cd34" and d["lineage"][1]["error_message"] == "first"
    assert d["error_stack"].startswith("Traceback")
    assert d["headers"][dl.H_ID] == "id0003"
    assert fv.detail(first, by_id, states)["replayed_as"] == ["id0002"]
    # a replay whose dead letter left the topic (retention) is named, not followed
    orphan = entry(4, replay_of="gone0000")
    assert fv.detail(orphan, {"id0004": orphan}, {})["lineage"] == [
        {"id": "gone0000", "known": False, "state": None}]


def test_selection_digest_depends_on_the_ids_not_their_order() -> None:
    assert fv.selection_digest(["b", "a"]) == fv.selection_digest(["a", "b"])
    assert fv.selection_digest(["a"]) != fv.selection_digest(["a", "b"])


def test_action_records_fold_into_a_history_and_nothing_else() -> None:
    states: dict[str, dict[str, Any]] = {}
    key = f"{ACTION_KEY_PREFIX}2026-12-01T10:00:00.000+00:00:aaaa"
    apply_state(states, Msg(key, json.dumps({"type": "action", "action": "replay", "count": 3,
                                            "state": "running", "at": "2026-12-01T10:00:00"}).encode()))
    apply_state(states, Msg(key, json.dumps({"type": "action", "action": "replay", "count": 3, "done": 3,
                                            "state": "done", "at": "2026-12-01T10:00:05"}).encode()))
    later = f"{ACTION_KEY_PREFIX}2026-12-01T11:00:00.000+00:00:bbbb"
    apply_state(states, Msg(later, json.dumps({"type": "action", "action": "forget", "count": 1,
                                              "state": "done", "at": "2026-12-01T11:00:00"}).encode()))
    apply_state(states, Msg("id0001", json.dumps({"status": "resolved", "how": "forget"}).encode()))
    history = actions(states)
    assert [(a["action"], a["state"]) for a in history] == [("forget", "done"), ("replay", "done")]
    # the open-entry rule and the failed count see no dead letter in an action record
    by_id = {"id0001": entry(1), "id0002": entry(2)}
    assert [e.id for e in open_entries(by_id, states)] == ["id0002"]
    tally = DeadLetterTally({"bootstrap.servers": "127.0.0.1:1", "group.id": "unit"}, TOPICS, [])
    try:
        for k, v in states.items():
            tally._apply(TOPICS.dead_letter_state, Msg(k, json.dumps(v).encode()))
        assert tally.resolved == {"id0001"}
    finally:
        tally.close()


def test_filter_poison_field_keeps_the_cli_filter_unchanged() -> None:
    e = entry(1, replay_of="id0000")
    e.poison = True
    assert Filter().match(e) and Filter(poison=True).match(e) and not Filter(poison=False).match(e)


def test_filters_by_the_events_owner_and_gallery_and_trust_nothing_in_the_value() -> None:
    def ev(owner: object, gallery: object) -> bytes:
        return json.dumps({"uuid": "x", "owner_id": owner, "gallery_id": gallery}).encode()

    by_id = {e.id: e for e in [
        entry(1, value=ev("owner-7", "g-1")),
        entry(2, value=ev("owner-7", "g-2")),
        entry(3, value=ev(42, "g-1")),  # numbers are ids too
        entry(4, value=b"not json"),
        entry(5, value=b'["owner-7"]'),
        entry(6, value=ev({"owner_id": "owner-7"}, None)),  # nested: not an id
        entry(7, value=b'{"owner_id": "owner-7", "pad": "' + b"x" * 70_000 + b'"}'),  # too big
    ]}
    entries = open_entries(by_id, {})

    def ids(**params: str) -> list[str]:
        return sorted(r["id"] for r in fv.page_of(entries, q(**params))["items"])

    assert ids(owner="owner-7") == ["id0001", "id0002"]
    assert ids(owner="owner-7", gallery="g-2") == ["id0002"]
    assert ids(gallery="g-1") == ["id0001", "id0003"]
    assert ids(owner="42") == ["id0003"]
    assert ids(owner="nobody") == []
    assert fv.filter_json(fv.parse_filter({"owner": " owner-7 "}, TOPICS, NOW))["owner"] == "owner-7"
