"""Worker health from offsets alone: a sliding window of samples per partition, judged in the
spirit of Burrow's rules, then rolled up. Pure: no Kafka, no clock (``now`` is an argument).

Per partition, with ``T`` the stall threshold:

- idle        nothing waiting (lag 0) and the committed offset did not move since the last look;
- processing  the committed offset moved within ``T`` (however large or old the lag: a slow
              partition that moves is not stopped), or it just caught up;
- pending     records wait, the oldest younger than ``T``; or older, but the committed offset
              has not yet been watched for ``T`` (no evidence either way);
- stalled     records wait, the oldest older than ``T``, and the committed offset has not moved
              for longer than ``T`` (the reason tells Burrow's stall, a commit within the window
              and then none, from his stop, none in the whole window), or no member of the
              group holds the partition;
- unknown     the partition could not be read (the caller says why).

What the workers' heartbeats add (``Context``): a job in flight on the partition is
processing until it passes its own timeout (then stalled), however long past ``T``; a
partition a live worker holds back for priority is pending ("waiting for priority"), never
stalled; so is one whose worker has every slot busy with jobs within their timeout
("waiting for a free slot"). Burrow's warnings ride on the reason: lag rising across the whole window while
the offset moves ("falling behind"), a committed offset that went back ("rewind").

A partition with no traffic has lag 0 and never moves: idle, not stalled.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from streams import kafka


class State(enum.StrEnum):
    PROCESSING = "processing"
    IDLE = "idle"
    STALLED = "stalled"
    PENDING = "pending"
    UNKNOWN = "unknown"


# The roll-up shows the first state any partition is in, in this order. Processing outranks
# pending on purpose: under live traffic some partition nearly always holds a record a
# second old, and a group that is visibly committing is not waiting on anyone; the pending
# partitions are still listed.
PRECEDENCE: tuple[State, ...] = (
    State.STALLED, State.UNKNOWN, State.PROCESSING, State.PENDING, State.IDLE,
)
# Gauge value in /metrics, ordered by how much an operator should care.
METRIC_CODE: dict[State, int] = {
    State.IDLE: 0, State.PROCESSING: 1, State.PENDING: 2, State.STALLED: 3, State.UNKNOWN: 4,
}
# ``prophoto-ingest status check`` exit codes.
EXIT_CODE: dict[State, int] = {
    State.PROCESSING: 0, State.IDLE: 0, State.PENDING: 1, State.STALLED: 2, State.UNKNOWN: 3,
}


@dataclass(frozen=True)
class Sample:
    """One look at one partition."""

    t: float  # wall-clock seconds when the offsets were read
    begin: int  # log-start offset
    end: int  # log-end offset (the next offset to be written)
    committed: int | None  # the group's committed offset; None if it never committed here
    oldest_ts: float | None = None  # timestamp (s) of the record at the committed offset, if read
    held: bool = True  # a member of the group has the partition assigned

    @property
    def position(self) -> int:
        return kafka.position(self.begin, self.committed)

    @property
    def lag(self) -> int:
        return kafka.lag(self.begin, self.end, self.committed)

    def same_offsets(self, other: Sample) -> bool:
        return (self.committed, self.end, self.held) == (other.committed, other.end, other.held)


class Window:
    """The recent samples of one partition.

    Runs of identical samples collapse to their first and last, so memory stays small however
    often the offsets are read, and the first keeps the time a value was first seen. Samples
    older than ``horizon_s`` are dropped, except the newest of them: it proves how long a
    value has held.
    """

    def __init__(self, horizon_s: float, max_samples: int = 64) -> None:
        self.horizon_s = horizon_s
        self.samples: deque[Sample] = deque(maxlen=max_samples)

    def add(self, s: Sample) -> None:
        w = self.samples
        if w and (s.end < w[-1].end or s.begin > w[-1].end):
            w.clear()  # the topic was recreated or truncated: the history says nothing now
        if len(w) >= 2 and w[-1].same_offsets(s) and w[-2].same_offsets(s):
            w[-1] = s
        else:
            w.append(s)
        while len(w) > 2 and w[1].t <= s.t - self.horizon_s:
            w.popleft()


@dataclass(frozen=True)
class Verdict:
    state: State
    reason: str
    lag: int = 0
    lag_s: float | None = None  # age of the oldest waiting record (a lower bound if not read)
    since_moved_s: float | None = None  # the committed offset has not moved for at least this
    moved_seen: bool = False  # the window saw it move (else since_moved_s is the watch time)


def unknown(reason: str) -> Verdict:
    return Verdict(State.UNKNOWN, reason)


@dataclass(frozen=True)
class Context:
    """What live workers' heartbeats say about one partition."""

    paused: str | None = None  # held back by a worker, and why
    job_running_s: float | None = None  # the longest job in flight on it
    job_timeout_s: float | None = None
    busy: str | None = None  # its worker's every slot runs a job within its timeout
    released_s: float | None = None  # a hold (pause, busy worker, job) ended this long ago


NO_CONTEXT = Context()


def _rewind(w: Sequence[Sample]) -> str:
    for i in range(len(w) - 1, 0, -1):
        a, b = w[i - 1].committed, w[i].committed
        if a is not None and b is not None and b < a:
            return f"; rewind: committed offset went back from {a} to {b} (an offset reset)"
    return ""


def _falling_behind(w: Sequence[Sample]) -> str:
    lags = [s.lag for s in w]
    if len(lags) >= 3 and lags[-1] > lags[0] and all(b >= a for a, b in itertools.pairwise(lags)):
        return (f"; falling behind: lag rose from {lags[0]} to {lags[-1]} over "
                f"{_secs(w[-1].t - w[0].t)} while committing")
    return ""


def _moved_at(w: Sequence[Sample]) -> float | None:
    for i in range(len(w) - 1, 0, -1):
        if w[i].committed != w[i - 1].committed:
            return w[i].t  # first seen at the new value: the latest it can have moved
    return None


def _frozen(moved_in_window: bool, since_moved: float) -> str:
    """Burrow's two, both stalled here: a commit within the window and then none (stall), or
    none in the whole window (stop)."""
    if moved_in_window:
        return f"committed offset unchanged for {_secs(since_moved)}"
    return f"stopped: no commit in the whole {_secs(since_moved)} window"


def _lag_since(w: Sequence[Sample]) -> float:
    """When this lag was first seen at the current committed offset."""
    last = w[-1]
    since = last.t
    for s in reversed(w):
        if s.committed != last.committed or s.lag == 0:
            break
        since = s.t
    return since


def _secs(x: float) -> str:
    return f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"


def _from_heartbeats(ctx: Context) -> tuple[State, str] | None:
    """A job in flight outranks a pause: it started before the pause, and it is running."""
    running, timeout = ctx.job_running_s, ctx.job_timeout_s
    if running is not None:
        if timeout is None or running <= timeout:
            of = f" of its {_secs(timeout)} timeout" if timeout else ""
            return State.PROCESSING, f"job running {_secs(running)}{of}"
        return State.STALLED, f"job running {_secs(running)}, past its {_secs(timeout)} timeout"
    if ctx.paused:
        return State.PENDING, ctx.paused
    if ctx.busy:
        return State.PENDING, ctx.busy
    return None


def _just_released(ctx: Context, threshold_s: float) -> tuple[State, str] | None:
    # The stall clock restarts when a hold ends: a backlog a pause kept waiting is not
    # stuck the moment the pause is lifted (while a member holds it).
    if ctx.released_s is not None and ctx.released_s <= threshold_s:
        return State.PENDING, f"held back until {_secs(ctx.released_s)} ago, not yet picked up"
    return None


def evaluate(
    window: Sequence[Sample], now: float, threshold_s: float, *, rebalancing: bool = False,
    ctx: Context = NO_CONTEXT,
) -> Verdict:
    """Judge one partition from its window (oldest first). ``rebalancing``: the group is
    between assignments, so "no member holds it" is no evidence of a stall. ``ctx``: what
    the live workers' heartbeats say about it."""
    if not window:
        return unknown("never read")
    s = window[-1]
    lag = s.lag
    moved_at = _moved_at(window)
    since_moved = max(0.0, now - (moved_at if moved_at is not None else window[0].t))
    if lag == 0:
        lag_s: float | None = 0.0
    elif s.oldest_ts is not None:
        lag_s = max(0.0, now - s.oldest_ts)
    else:
        lag_s = None
    age = lag_s if lag_s is not None else max(0.0, now - _lag_since(window))

    rewind = _rewind(window)

    def verdict(state: State, reason: str) -> Verdict:
        return Verdict(state, reason + rewind, lag, lag_s, since_moved, moved_at is not None)

    if lag == 0:
        if moved_at is not None and moved_at == s.t and len(window) >= 2:
            return verdict(State.PROCESSING, "caught up since the last look")
        return verdict(State.IDLE, "nothing waiting" + ("" if s.held else "; no member holds it"))
    waiting = f"{lag} waiting, the oldest for {_secs(age)}"
    if moved_at is not None and now - moved_at <= threshold_s:
        return verdict(State.PROCESSING, f"{waiting}; committed offset moved {_secs(now - moved_at)} ago"
                       + _falling_behind(window))
    said = _from_heartbeats(ctx) or (_just_released(ctx, threshold_s) if s.held else None)
    if said is not None:
        return verdict(said[0], f"{waiting}; {said[1]}")
    if age <= threshold_s:
        who = "" if s.held else "; no member holds it yet"
        return verdict(State.PENDING, f"{waiting}{who}")
    if not s.held and not rebalancing:
        return verdict(State.STALLED, f"{waiting}; no member of the group holds this partition")
    if since_moved > threshold_s:
        return verdict(State.STALLED, f"{waiting}; {_frozen(moved_at is not None, since_moved)}")
    return verdict(
        State.PENDING,
        f"{waiting}; committed offset watched for only {_secs(since_moved)}, "
        f"not yet the {_secs(threshold_s)} that makes a stall",
    )


@dataclass(frozen=True)
class Rollup:
    state: State
    by_state: dict[State, list[str]] = field(default_factory=dict)  # labels, e.g. "ingest/3"

    def partitions(self, state: State) -> list[str]:
        return self.by_state.get(state, [])


def rollup(verdicts: Mapping[str, Verdict]) -> Rollup:
    """The group's state: the first state in PRECEDENCE any partition is in."""
    by_state: dict[State, list[str]] = {}
    for label, v in verdicts.items():
        by_state.setdefault(v.state, []).append(label)
    for state in PRECEDENCE:
        if state in by_state:
            return Rollup(state, by_state)
    return Rollup(State.UNKNOWN, by_state)


def _listing(labels: Iterable[str], limit: int = 6) -> str:
    items = sorted(labels)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def hint(r: Rollup, verdicts: Mapping[str, Verdict], members: int, pending: int) -> str:
    """What the state means, in plain words, for the dashboard and ``status check``."""
    workers = "no worker is running" if members == 0 else (
        "1 worker is connected" if members == 1 else f"{members} workers are connected")
    if r.state is State.UNKNOWN:
        reasons = {verdicts[p].reason for p in r.partitions(State.UNKNOWN)}
        return "cannot tell: " + "; ".join(sorted(reasons)) if reasons else "cannot tell"
    if r.state is State.IDLE:
        return f"nothing waiting; {workers}"
    if r.state is State.PROCESSING:
        return f"{workers} and committing; {pending} waiting"
    if r.state is State.PENDING:
        labels = r.partitions(State.PENDING)
        oldest = max((verdicts[p].lag_s or 0.0) for p in labels)
        held = [p for p in labels if "waiting for priority" in verdicts[p].reason
                or "paused by operator" in verdicts[p].reason]
        if held and len(held) == len(labels):
            return (f"{pending} waiting, the oldest for {_secs(oldest)}, held back on purpose "
                    f"(waiting for priority or paused by operator); {workers} "
                    f"(partitions {_listing(labels)})")
        return (f"{pending} waiting, the oldest for {_secs(oldest)}, not yet picked up; {workers}"
                f" (partitions {_listing(labels)})")
    labels = r.partitions(State.STALLED)
    stuck = sum(verdicts[p].lag for p in labels)
    oldest = max((verdicts[p].lag_s or 0.0) for p in labels)
    if members == 0:
        fix = "start one with `prophoto-ingest worker`"
    elif any("past its" in verdicts[p].reason for p in labels):
        fix = "a job has run past its timeout: its worker may be stuck (see its log)"
    elif any("no member" in verdicts[p].reason for p in labels):
        fix = "no member holds some of them: check the workers' --topics and the group's rebalance"
    else:
        fix = "a worker holds them but commits nothing: it may be stuck on a job (see its log)"
    return (f"{stuck} waiting on {_listing(labels)}, the oldest for {_secs(oldest)}, "
            f"committed offsets not moving; {workers}; {fix}")
