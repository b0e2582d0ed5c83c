"""The operator's view of dead letters: list them, resolve them, replay them.

Dead letters stay in their topics forever (retention permitting); whether one is still
open is kept in a compacted topic keyed by dead-letter id (``Topics.dead_letter_state``),
so every machine sees the same list. A replay re-publishes the original record to its
source topic with the same key, carries the attempt count on, and links back to the dead
letter; the dead letter is then marked resolved. A UUID that dead-letters again after a
replay is flagged ``poison`` and is not replayed again without ``force``.
"""

from __future__ import annotations

import json
import time
import uuid as uuid_mod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from . import headers as dl
from . import kafka
from .errors import KafkaUnavailable
from .kafka import TopicTail, read_to_end
from .outcomes import DeadLetterReason
from .producer import EventProducer
from .settings import KafkaSettings
from .topics import Job, Topics


@dataclass
class DeadLetterEntry:
    id: str
    uuid: str
    job: Job
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    source_topic: str
    source_partition: int
    source_offset: int
    error_class: str
    error_message: str
    reason: DeadLetterReason | None  # None: no reason header, or one we do not write
    attempts: int
    worker: str
    first_failed_at: str
    failed_at: str
    replay_of: str | None
    key: bytes | None
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)
    poison: bool = False

    def summary(self) -> dict[str, object]:
        return {
            "id": self.id, "uuid": self.uuid, "source_topic": self.source_topic,
            "error_class": self.error_class.rsplit(".", 1)[-1], "error_message": self.error_message,
            "failed_at": self.failed_at, "attempts": self.attempts,
            # an unknown header value is shown as it came
            "reason": self.reason or self.headers.get(dl.H_REASON, "?"),
            "poison": self.poison, "replay_of": self.replay_of,
            "dead_letter": f"{self.dlq_topic}/{self.dlq_partition}@{self.dlq_offset}",
        }


@dataclass(frozen=True)
class Filter:
    topics: tuple[str, ...] = ()
    error: str | None = None
    since: datetime | None = None
    uuid: str | None = None
    ids: tuple[str, ...] = ()
    poison: bool | None = None  # True: only poison entries; False: none of them
    owner: str | None = None  # the event's owner_id / gallery_id (whole ids)
    gallery: str | None = None

    def match(self, e: DeadLetterEntry) -> bool:
        if self.ids and e.id not in self.ids:
            return False
        if self.poison is not None and e.poison != self.poison:
            return False
        if self.topics and e.source_topic not in self.topics and e.job.value not in self.topics:
            return False
        if self.error and self.error.lower() not in f"{e.error_class} {e.error_message}".lower():
            return False
        if self.uuid and e.uuid != self.uuid:
            return False
        if (self.owner or self.gallery) and not self._owned(e):
            return False
        return not (self.since and datetime.fromisoformat(e.failed_at) < self.since)

    def _owned(self, e: DeadLetterEntry) -> bool:
        """The event's own owner and gallery; a value that is not an event object matches
        nothing (it is untrusted: no size or shape is assumed)."""
        if not e.value or len(e.value) > 64 * 1024:
            return False
        try:
            body = json.loads(e.value)
        except ValueError:
            return False
        if not isinstance(body, dict):
            return False
        return all(want is None or (isinstance(got, str | int) and str(got) == want)
                   for want, got in ((self.owner, body.get("owner_id")),
                                     (self.gallery, body.get("gallery_id"))))


def _consumer(settings: KafkaSettings) -> Consumer:
    conf = kafka.reader_config(settings)
    return kafka.consumer(settings, conf["group.id"], conf)  # type: ignore[no-any-return]


class DeadLetters:
    def __init__(self, kafka: KafkaSettings, topics: Topics) -> None:
        self.kafka = kafka
        self.topics = topics

    # -- state ----------------------------------------------------------------------
    def states(self) -> dict[str, dict[str, Any]]:
        """The latest state record per dead-letter id (resolved, or replaying)."""
        out: dict[str, dict[str, Any]] = {}
        for m in read_to_end(self.kafka, [self.topics.dead_letter_state]):
            apply_state(out, m)
        return out

    def resolved(self) -> dict[str, dict[str, Any]]:
        """Ids whose latest state is resolved; a replay under way leaves them open."""
        return {k: v for k, v in self.states().items() if v.get("status") == RESOLVED}

    def entries(self, *, include_resolved: bool = False) -> list[DeadLetterEntry]:
        """Dead letters, newest copy per id, with the poison flag; unresolved by default."""
        by_id: dict[str, DeadLetterEntry] = {}
        names = {self.topics.dead_letter(j): j for j in Job}
        for m in read_to_end(self.kafka, names):
            entry = entry_from_message(m, names[m.topic() or ""])
            by_id[entry.id] = entry
        return open_entries(by_id, self.states(), include_resolved=include_resolved)

    def resolve(self, ids: Iterable[str], how: str, by: str = "cli") -> int:
        n = 0
        with EventProducer(self.kafka) as p:
            for i in ids:
                self._mark(p, i, RESOLVED, how=how, by=by)
                n += 1
        return n

    def _mark(self, p: EventProducer, dead_letter_id: str, status: str, **extra: Any) -> None:
        body = {"id": dead_letter_id, "status": status,
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"), **extra}
        p.send(self.topics.dead_letter_state, dead_letter_id.encode(), json.dumps(body).encode())

    # -- replay ---------------------------------------------------------------------
    def clear(self, group: str, topic: str, *, apply: bool) -> dict[int, int]:
        """Records per partition between the group's committed offset and the end; with
        ``apply``, move the committed offsets to the end (the group must have no members)."""
        from confluent_kafka import ConsumerGroupTopicPartitions

        admin = kafka.admin(self.kafka)
        c = _consumer(self.kafka)
        # Committed offsets through a consumer of the group (it never joins): librdkafka's
        # admin OffsetFetch can crash the process while the group coordinator loads.
        group_reader = kafka.consumer(self.kafka, group)
        t = self.kafka.request_timeout_s
        try:
            md = c.list_topics(topic, timeout=t)
            meta = md.topics.get(topic)
            if meta is None or meta.error is not None:
                raise ValueError(f"no topic {topic!r} on the broker")
            tps = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
            committed = {tp.partition: tp.offset for tp in group_reader.committed(tps, timeout=t)}
            skipped: dict[int, int] = {}
            ends: list[TopicPartition] = []
            for tp in tps:
                lo, hi = c.get_watermark_offsets(tp, timeout=t)
                skipped[tp.partition] = kafka.lag(lo, hi, committed.get(tp.partition))
                ends.append(TopicPartition(topic, tp.partition, hi))
        except KafkaException as exc:
            raise KafkaUnavailable(f"Kafka error: {exc}") from exc
        finally:
            c.close()
            group_reader.close()
        if apply and any(skipped.values()):
            _refuse_if_members(admin, group, t)
            fut2 = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, ends)])
            try:
                result = fut2[group].result(timeout=t)
            except KafkaException as exc:
                raise KafkaUnavailable(
                    f"cannot move offsets of group {group!r} ({exc.args[0]}); Kafka refuses while "
                    "workers are members: stop them first (prophoto-ingest restart)"
                ) from exc
            # Kafka answers per partition: a refusal (the group has members) is not raised.
            refused = [tp for tp in result.topic_partitions or [] if tp.error is not None]
            if refused:
                why = refused[0].error
                raise KafkaUnavailable(
                    f"cannot move offsets of group {group!r}: {len(refused)} of {len(ends)} "
                    f"partitions refused ({why.str() if hasattr(why, 'str') else why}); Kafka "
                    "refuses while workers are members: stop them first (prophoto-ingest restart)")
        return skipped

    def replay(
        self, entries: list[DeadLetterEntry], *, dry_run: bool = False, rate: float | None = None,
        progress: Callable[[DeadLetterEntry], None] | None = None, by: str = "cli",
    ) -> list[DeadLetterEntry]:
        """Re-publish each entry to its source topic and mark it resolved, one at a time.

        Interruptible: an entry is marked ``replaying`` before its send and ``resolved`` once
        the send is confirmed, so a rerun sends only what is still open; an entry left
        ``replaying`` by an interrupted run is resolved if its replayed record reached the
        source topic, else sent. One resolved meanwhile (``forget``, ``flush``, another
        replay) is skipped. Returns the entries replayed by this call.
        """
        if dry_run or not entries:
            return entries
        interval = 1.0 / rate if rate else 0.0
        done: list[DeadLetterEntry] = []
        with StateTail(self.kafka, self.topics.dead_letter_state) as state, \
                EventProducer(self.kafka) as p:
            for e in entries:
                state.refresh()
                current = state.get(e.id)
                if current.get("status") == RESOLVED:
                    continue  # resolved while we went: that wins
                if current.get("status") == REPLAYING and self._replayed_since(e, current):
                    self._mark(p, e.id, RESOLVED, how="replay", by=by)
                    p.flush()
                    continue
                self._mark(p, e.id, REPLAYING, by=by)
                p.flush()
                p.send(e.source_topic, e.key, e.value, headers=replay_headers(e))
                p.flush()
                self._mark(p, e.id, RESOLVED, how="replay", by=by)
                p.flush()
                done.append(e)
                if progress:
                    progress(e)
                if interval:
                    time.sleep(interval)
        return done

    def _replayed_since(self, e: DeadLetterEntry, state: dict[str, Any]) -> bool:
        """Did a replay of ``e`` reach its source topic after the ``replaying`` mark?"""
        from .topics import partition_for

        try:
            since_ms = int(datetime.fromisoformat(str(state.get("at"))).timestamp() * 1000)
        except ValueError:
            since_ms = 0
        t = self.kafka.request_timeout_s
        found = False

        def each(m: Any) -> None:
            nonlocal found
            found = found or dl.headers_to_dict(m.headers()).get(dl.H_REPLAY_OF) == e.id

        with TopicTail(kafka.reader_config(self.kafka), [e.source_topic]) as tail:
            parts = tail.partitions(time.monotonic() + t)
            if not parts or e.key is None:
                return False
            tp = (e.source_topic, partition_for(e.key, len(parts)))
            start = tail.offset_for_time(tp, since_ms, time.monotonic() + t)
            if start is None:
                return False  # nothing written since the mark
            tail.next[tp] = start
            caught_up = tail.read(time.monotonic() + 30, each,
                                  tail.watermarks([tp], time.monotonic() + t))
        if found or caught_up:
            return found
        raise KafkaUnavailable(f"timed out looking for the replay of {e.id} in {e.source_topic}")


RESOLVED = "resolved"
REPLAYING = "replaying"
# Operator actions (the status page's replay and forget) share the resolution topic under
# keys of their own: no dead-letter id starts with it, and their bodies have no "status",
# so neither ``resolved()`` nor the status service's failed count takes them for one.
ACTION_KEY_PREFIX = "action:"


def open_entries(
    by_id: dict[str, DeadLetterEntry], states: dict[str, dict[str, Any]], *,
    include_resolved: bool = False,
) -> list[DeadLetterEntry]:
    """The newest copy per id with its poison flag, unresolved ones unless asked, oldest first."""
    for e in by_id.values():
        # It failed again after a replay: the input itself is bad; stop the loop here.
        e.poison = e.replay_of is not None
    keep = (e for e in by_id.values()
            if include_resolved or states.get(e.id, {}).get("status") != RESOLVED)
    return sorted(keep, key=lambda e: (e.failed_at, e.id))


def record_action(kafka: KafkaSettings, topics: Topics, action: dict[str, Any],
                  key: str | None = None) -> str:
    """Write an operator action (what, how many, by whom) to the resolution topic; returns
    its key, which a later call passes to record how the same action ended."""
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    key = key or f"{ACTION_KEY_PREFIX}{at}:{uuid_mod.uuid4().hex[:8]}"
    body = {**action, "type": "action", "key": key, "at": at}
    with EventProducer(kafka) as p:
        p.send(topics.dead_letter_state, key.encode(), json.dumps(body).encode())
    return key


def actions(states: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded operator actions in ``states`` (as ``apply_state`` folds them), newest first."""
    found = [v for k, v in states.items() if k.startswith(ACTION_KEY_PREFIX) and v.get("type") == "action"]
    return sorted(found, key=lambda v: str(v.get("at", "")), reverse=True)


def _refuse_if_members(admin: Any, group: str, timeout: float) -> None:
    """Kafka does not always refuse an admin offset commit while members hold the group's
    partitions (seen with the workers' aiokafka members): ask the group itself first."""
    try:
        desc = kafka.describe_group(admin, group, timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot describe group {group!r}: {exc.args[0]}") from exc
    members = list(getattr(desc, "members", None) or [])
    if members:
        names = ", ".join(sorted(str(getattr(m, "client_id", "?")) for m in members)[:5])
        raise KafkaUnavailable(
            f"group {group!r} has {len(members)} member(s) ({names}); moving its offsets now "
            "would be undone by their next commit: stop them first (prophoto-ingest restart)")


def apply_state(state: dict[str, dict[str, Any]], m: Any) -> None:
    """Fold one resolution-topic record into ``state``: a tombstone reopens the id, a JSON
    object is its latest state, anything else is ignored."""
    key = (m.key() or b"").decode()
    value = m.value()
    if value is None:
        state.pop(key, None)
        return
    try:
        body = json.loads(value)
    except ValueError:
        return
    if isinstance(body, dict):
        state[key] = body


def replay_headers(e: DeadLetterEntry) -> list[tuple[str, bytes]]:
    """The control headers a replayed record carries: the attempts so far as the new round's
    base (a fresh tries budget), a link back to the dead letter, no stale retry state."""
    headers = {k: v for k, v in e.headers.items() if k.startswith(dl.PREFIX) and k not in _DLQ_ONLY}
    headers[dl.H_ATTEMPT] = str(e.attempts)
    headers[dl.H_ROUND_BASE] = str(e.attempts)
    headers[dl.H_REPLAY_OF] = e.id
    for k in (dl.H_NOT_BEFORE, dl.H_ORIGINAL_TOPIC, dl.H_ORIGINAL_PARTITION,
              dl.H_ORIGINAL_OFFSET, dl.H_ORIGINAL_TIMESTAMP, dl.H_RETRY_FIRST_FAILURE_MS):
        headers.pop(k, None)
    return [(k, v.encode()) for k, v in headers.items()]


class StateTail:
    """The resolution topic read to its end, then followed: a long replay sees a ``forget``
    made while it runs."""

    def __init__(self, kafka_settings: KafkaSettings, topic: str) -> None:
        self.kafka = kafka_settings
        self.topic = topic
        self.state: dict[str, dict[str, Any]] = {}
        self._tail = TopicTail(kafka.reader_config(kafka_settings), [topic])

    def __enter__(self) -> StateTail:
        return self

    def __exit__(self, *_: object) -> None:
        self._tail.close()

    def get(self, dead_letter_id: str) -> dict[str, Any]:
        return self.state.get(dead_letter_id, {})

    def refresh(self) -> None:
        """Read what was written to the resolution topic since the last refresh."""
        deadline = time.monotonic() + self.kafka.request_timeout_s * 3
        if not self._tail.read(deadline, lambda m: apply_state(self.state, m)):
            raise KafkaUnavailable(f"timed out reading {self.topic}")


_DLQ_ONLY = {dl.H_ID, dl.H_REASON, dl.H_ATTEMPTS, dl.H_WORKER, dl.H_FIRST_FAILURE, dl.H_LAST_FAILURE,
             dl.H_REPLAY_OF, dl.H_LAST_ERROR}


def entry_from_message(m: Any, job: Job) -> DeadLetterEntry:
    """One dead-letter record as an entry (its id header, or one made from its coordinates)."""
    h = dl.headers_to_dict(m.headers())
    topic, partition, offset = m.topic(), m.partition(), m.offset()
    key = m.key()
    src_topic = h.get(dl.H_TOPIC, "")
    src_part = int(h.get(dl.H_PARTITION, "-1") or -1)
    src_off = int(h.get(dl.H_OFFSET, "-1") or -1)
    return DeadLetterEntry(
        id=h.get(dl.H_ID) or dl.dead_letter_id(topic, partition, offset),
        uuid=(key or b"").decode("utf-8", "replace"),
        job=job, dlq_topic=topic, dlq_partition=partition, dlq_offset=offset,
        source_topic=src_topic, source_partition=src_part, source_offset=src_off,
        error_class=h.get(dl.H_EXC_CLASS, "?"), error_message=h.get(dl.H_EXC_MESSAGE, ""),
        reason=dl.read_reason(h), attempts=int(h.get(dl.H_ATTEMPTS, "0") or 0),
        worker=h.get(dl.H_WORKER, ""), first_failed_at=h.get(dl.H_FIRST_FAILURE, ""),
        failed_at=h.get(dl.H_LAST_FAILURE, ""), replay_of=h.get(dl.H_REPLAY_OF),
        key=key, value=m.value(), headers=h,
    )
