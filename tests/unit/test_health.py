"""The health evaluation over synthetic offset histories: every state, the transitions, and
the traps Burrow users hit."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from status.health import (
    EXIT_CODE,
    METRIC_CODE,
    PRECEDENCE,
    Context,
    Sample,
    State,
    Verdict,
    Window,
    evaluate,
    hint,
    rollup,
    unknown,
)

T = 30.0  # stall threshold


def history(points: Iterable[tuple[float, int, int | None]], *, begin: int = 0, held: bool = True,
            oldest: dict[float, float] | None = None) -> Window:
    """A window from (t, end, committed) points; ``oldest`` maps t -> oldest record timestamp."""
    w = Window(horizon_s=2 * T)
    for t, end, committed in points:
        w.add(Sample(t, begin, end, committed, (oldest or {}).get(t), held))
    return w


def judge(w: Window, now: float | None = None, ctx: Context | None = None, **kw: bool) -> Verdict:
    samples = list(w.samples)
    return evaluate(samples, samples[-1].t if now is None else now, T, ctx=ctx or Context(), **kw)


# -- single states ---------------------------------------------------------------------
def test_no_traffic_is_idle_not_stalled_however_long() -> None:
    # Burrow trap: a partition nobody writes to never moves; that is not a stall.
    w = history((t, 500, 500) for t in range(0, 3600, 5))
    v = judge(w)
    assert v.state is State.IDLE and v.lag == 0
    assert v.since_moved_s is not None and v.since_moved_s > T


def test_empty_topic_never_committed_is_idle() -> None:
    v = judge(history([(0, 0, None), (5, 0, None)]))
    assert v.state is State.IDLE and v.lag == 0


def test_never_committed_lag_counts_from_log_start() -> None:
    # Retention removed offsets 0..99; the workers start at the log start, not at 0.
    w = history([(0, 130, None)], begin=100, oldest={0: -5.0})
    v = judge(w)
    assert v.lag == 30 and v.state is State.PENDING


def test_commit_below_log_start_counts_from_log_start() -> None:
    v = judge(history([(0, 130, 40)], begin=100, oldest={0: -1.0}))
    assert v.lag == 30


def test_moving_committed_offset_is_processing() -> None:
    w = history([(0, 100, 10), (5, 110, 30), (10, 120, 55)], oldest={10: 9.0})
    v = judge(w)
    assert v.state is State.PROCESSING and v.lag == 65 and v.moved_seen


def test_slow_partition_that_moves_is_not_stopped() -> None:
    # Burrow trap: lag large and old, growing even, but the offset moves: processing.
    pts = [(t, 1000 + 10 * t, 100 + t // 20) for t in range(0, 600, 5)]
    w = history(pts, oldest={595: 0.0})  # the oldest waiting record is ten minutes old
    v = judge(w)
    assert v.lag_s == pytest.approx(595)
    assert v.state is State.PROCESSING, v.reason


def test_young_lag_is_pending() -> None:
    w = history([(0, 10, 10), (5, 10, 10), (10, 13, 10)], oldest={10: 8.0})
    v = judge(w)
    assert v.state is State.PENDING and v.lag == 3 and v.lag_s == pytest.approx(2.0)


def test_old_lag_without_movement_is_stalled() -> None:
    # it committed once in the window (9 -> 10 at t=5), then nothing: Burrow's stall
    w = history([(0, 20, 9)] + [(t, 20, 10) for t in range(5, 60, 5)], oldest={55: 0.0})
    v = judge(w)
    assert v.state is State.STALLED and "committed offset unchanged for 50 s" in v.reason


def test_unknown_carries_its_reason() -> None:
    v = unknown("offsets of ingest/3: broker not available")
    assert v.state is State.UNKNOWN and "ingest/3" in v.reason


def test_empty_window_is_unknown() -> None:
    assert evaluate([], 0.0, T).state is State.UNKNOWN


# -- membership ------------------------------------------------------------------------
def test_backlog_with_no_member_is_pending_then_stalled() -> None:
    w = history([(0, 5, None)], held=False, oldest={0: 0.0})
    assert judge(w).state is State.PENDING
    w.add(Sample(31, 0, 5, None, 0.0, held=False))
    v = judge(w)
    assert v.state is State.STALLED and "no member" in v.reason


def test_no_member_is_stalled_from_a_single_look_once_the_lag_is_old() -> None:
    # One look is enough: with no member holding the partition nothing can move it.
    v = judge(history([(100, 5, 2)], held=False, oldest={100: 10.0}))
    assert v.state is State.STALLED


def test_rebalancing_group_is_not_stalled_for_lack_of_a_member() -> None:
    w = history([(100, 5, 2)], held=False, oldest={100: 10.0})
    assert judge(w, rebalancing=True).state is State.PENDING


def test_held_partition_needs_a_full_threshold_of_watching_before_stalled() -> None:
    # The service just started: the lag is old but the offset was watched for only 5 s.
    w = history([(0, 20, 10), (5, 20, 10)], oldest={5: -100.0})
    v = judge(w)
    assert v.state is State.PENDING and "watched for only" in v.reason
    w.add(Sample(31, 0, 20, 10, -100.0, True))
    assert judge(w).state is State.STALLED


def test_lag_age_falls_back_to_how_long_the_lag_was_seen() -> None:
    # The oldest record's timestamp could not be read in time (oldest_ts None).
    w = history([(0, 10, 10), (5, 12, 10), (20, 12, 10)])
    v = judge(w)
    assert v.lag_s is None and v.state is State.PENDING
    w.add(Sample(40, 0, 12, 10, None, True))
    assert judge(w).state is State.STALLED


# -- transitions -----------------------------------------------------------------------
def test_stalled_to_processing_to_idle() -> None:
    w = history([(t, 50, 0) for t in range(0, 65, 5)], oldest={60: 0.0})
    assert judge(w).state is State.STALLED
    w.add(Sample(65, 0, 50, 20, 30.0, True))  # a worker started and committed
    assert judge(w).state is State.PROCESSING
    w.add(Sample(70, 0, 50, 50, None, True))  # caught up since the last look
    v = judge(w)
    assert v.state is State.PROCESSING and v.lag == 0
    w.add(Sample(75, 0, 50, 50, None, True))
    assert judge(w).state is State.IDLE


def test_processing_then_stops_committing_becomes_stalled_after_threshold() -> None:
    w = history([(0, 100, 0), (5, 100, 20)], oldest={5: -60.0})
    assert judge(w).state is State.PROCESSING
    w.add(Sample(30, 0, 100, 20, -60.0, True))
    assert judge(w).state is State.PROCESSING  # moved 25 s ago: within the threshold
    w.add(Sample(36, 0, 100, 20, -60.0, True))
    v = judge(w)
    assert v.state is State.STALLED and v.since_moved_s == pytest.approx(31)


def test_idle_then_new_record_is_pending_then_processing() -> None:
    w = history([(t, 10, 10) for t in range(0, 100, 5)])
    assert judge(w).state is State.IDLE
    w.add(Sample(100, 0, 11, 10, 99.5, True))
    assert judge(w).state is State.PENDING
    w.add(Sample(105, 0, 11, 11, None, True))
    assert judge(w).state is State.PROCESSING
    w.add(Sample(110, 0, 11, 11, None, True))
    assert judge(w).state is State.IDLE


def test_idle_for_an_hour_then_old_unprocessed_record_is_stalled_at_once() -> None:
    # The offset last moved an hour ago; a record has waited 40 s: no need to watch again.
    w = history([(t, 10, 10) for t in range(0, 3600, 5)])
    w.add(Sample(3600, 0, 11, 10, 3560.0, True))
    assert judge(w).state is State.STALLED


# -- the window ------------------------------------------------------------------------
def test_window_collapses_identical_runs_and_keeps_first_seen_time() -> None:
    w = history((t, 10, 10) for t in range(0, 10_000))
    assert len(w.samples) <= 3
    assert w.samples[0].t <= 10_000 - 2 * T  # still proves how long the value held


def test_window_drops_old_samples_but_one() -> None:
    w = history((t, 10 + t, t) for t in range(0, 500, 5))  # always moving: nothing collapses
    times = [s.t for s in w.samples]
    assert times[0] <= 495 - 2 * T < times[1]


def test_recreated_topic_clears_history() -> None:
    w = history([(0, 500, 500), (5, 500, 500)])
    w.add(Sample(10, 0, 3, None, 9.0, True))  # end went backwards
    assert len(w.samples) == 1
    assert judge(w).state is State.PENDING


def test_offset_reset_backwards_counts_as_movement() -> None:
    w = history([(0, 100, 90), (5, 100, 90), (10, 100, 20)], oldest={10: -500.0})
    assert judge(w).state is State.PROCESSING


def test_rewind_is_said_and_judged_on_what_follows() -> None:
    w = history([(0, 100, 90), (5, 100, 90), (10, 100, 20)], oldest={10: -500.0})
    v = judge(w)
    assert "rewind: committed offset went back from 90 to 20" in v.reason
    # It stops moving after the reset: the rewind is still said, and the stall is called.
    for t in range(15, 60, 5):
        w.add(Sample(t, 0, 100, 20, -500.0, True))
    v = judge(w)
    assert v.state is State.STALLED and "rewind" in v.reason


def test_falling_behind_moves_but_lag_rises_every_look() -> None:
    w = history([(0, 100, 10), (5, 130, 20), (10, 160, 30), (15, 190, 40)], oldest={15: 0.0})
    v = judge(w)
    assert v.state is State.PROCESSING
    assert "falling behind: lag rose from 90 to 150" in v.reason


def test_keeping_up_is_not_falling_behind() -> None:
    w = history([(0, 100, 10), (5, 130, 60), (10, 160, 120), (15, 190, 150)], oldest={15: 14.0})
    v = judge(w)
    assert v.state is State.PROCESSING and "falling behind" not in v.reason


def test_stop_no_commit_for_longer_than_the_window_unless_caught_up() -> None:
    w = history([(t, 40, 30) for t in range(0, 120, 5)], oldest={115: 0.0})
    v = judge(w)
    assert v.state is State.STALLED and "stopped: no commit in the whole 115 s window" in v.reason
    caught_up = history([(t, 40, 40) for t in range(0, 120, 5)])
    assert judge(caught_up).state is State.IDLE


# -- what the heartbeats add -----------------------------------------------------------
def test_a_long_job_within_its_timeout_is_processing_not_stalled() -> None:
    # The committed offset has not moved for 95 s (past T), but a live worker says the job
    # at it has run 95 s of its 120 s timeout.
    w = history([(t, 3, 2) for t in range(0, 100, 5)], oldest={95: 0.0})
    assert judge(w).state is State.STALLED  # without heartbeats it would look stuck
    v = judge(w, ctx=Context(job_running_s=95.0, job_timeout_s=120.0))
    assert v.state is State.PROCESSING
    assert "job running 95 s of its 120 s timeout" in v.reason


def test_a_job_past_its_timeout_is_stalled() -> None:
    w = history([(t, 3, 2) for t in range(0, 130, 5)], oldest={125: 0.0})
    v = judge(w, ctx=Context(job_running_s=125.0, job_timeout_s=120.0))
    assert v.state is State.STALLED and "past its 120 s timeout" in v.reason
    r = rollup({"ingest-preview/0": v})
    assert "run past its timeout" in hint(r, {"ingest-preview/0": v}, members=1, pending=1)


def test_a_paused_partition_waits_for_priority_and_is_never_stalled() -> None:
    reason = "waiting for priority: ingest has 40 waiting on this worker's partitions (threshold 0)"
    w = history([(t, 50, 10) for t in range(0, 600, 5)], oldest={595: 0.0})  # ten minutes
    v = judge(w, ctx=Context(paused=reason))
    assert v.state is State.PENDING and "waiting for priority" in v.reason
    r = rollup({"ingest-preview/0": v})
    assert "held back on purpose" in hint(r, {"ingest-preview/0": v}, members=1, pending=40)
    # The worker that held it is gone (no context): the old lag is a stall again.
    assert judge(w).state is State.STALLED


def test_a_job_in_flight_on_a_paused_partition_is_processing() -> None:
    w = history([(t, 50, 10) for t in range(0, 60, 5)], oldest={55: 0.0})
    v = judge(w, ctx=Context(paused="waiting for priority: x", job_running_s=4.0, job_timeout_s=120))
    assert v.state is State.PROCESSING


def test_unknown_is_only_what_could_not_be_read() -> None:
    v = unknown("committed offset unreadable: COORDINATOR_LOAD_IN_PROGRESS")
    r = rollup({"ingest/0": v, "ingest/1": judge(history([(0, 5, 5), (5, 5, 5)]))})
    assert r.state is State.UNKNOWN and r.partitions(State.IDLE) == ["ingest/1"]


# -- roll-up and words -----------------------------------------------------------------
def _v(state: State, lag: int = 0, lag_s: float | None = 0.0, reason: str = "r") -> Verdict:
    return Verdict(state, reason, lag, lag_s)


def test_rollup_worst_wins_and_names_partitions() -> None:
    r = rollup({"ingest/0": _v(State.IDLE), "ingest/1": _v(State.STALLED, 3, 50.0),
                "ingest-preview/2": _v(State.PROCESSING, 9), "ingest-preview/3": _v(State.UNKNOWN)})
    assert r.state is State.STALLED
    assert r.partitions(State.STALLED) == ["ingest/1"]
    assert r.partitions(State.PROCESSING) == ["ingest-preview/2"]


@pytest.mark.parametrize("states, expected", [
    ([State.IDLE, State.IDLE], State.IDLE),
    ([State.IDLE, State.PENDING], State.PENDING),
    ([State.PENDING, State.PROCESSING], State.PROCESSING),
    ([State.PROCESSING, State.UNKNOWN], State.UNKNOWN),
    ([State.UNKNOWN, State.STALLED], State.STALLED),
])
def test_rollup_precedence(states: list[State], expected: State) -> None:
    assert rollup({f"t/{i}": _v(s) for i, s in enumerate(states)}).state is expected


def test_rollup_of_nothing_is_unknown() -> None:
    assert rollup({}).state is State.UNKNOWN


def test_codes_cover_every_state() -> None:
    assert set(PRECEDENCE) == set(State) == set(METRIC_CODE) == set(EXIT_CODE)
    assert [EXIT_CODE[s] for s in (State.PROCESSING, State.IDLE, State.PENDING, State.STALLED,
                                   State.UNKNOWN)] == [0, 0, 1, 2, 3]


def test_hints_say_what_to_do() -> None:
    stalled = {"ingest/1": _v(State.STALLED, 4, 80.0, "4 waiting; no member of the group holds it")}
    assert "prophoto-ingest worker" in hint(rollup(stalled), stalled, members=0, pending=4)
    assert "no member holds" in hint(rollup(stalled), stalled, members=2, pending=4)
    stuck = {"ingest/1": _v(State.STALLED, 4, 80.0, "committed offset unchanged for 40 s")}
    assert "stuck on a job" in hint(rollup(stuck), stuck, members=1, pending=4)
    idle = {"ingest/0": _v(State.IDLE)}
    assert hint(rollup(idle), idle, members=0, pending=0) == "nothing waiting; no worker is running"
    pending = {"ingest/0": _v(State.PENDING, 2, 3.0)}
    assert "2 waiting" in hint(rollup(pending), pending, members=1, pending=2)


def test_a_backlog_released_from_a_hold_gets_one_threshold_before_a_stall() -> None:
    w = history([(t, 50, 10) for t in range(0, 120, 5)], oldest={115: 0.0})
    assert judge(w, ctx=Context(released_s=2.0)).state is State.PENDING
    assert "held back until 2.0 s ago" in judge(w, ctx=Context(released_s=2.0)).reason
    assert judge(w, ctx=Context(released_s=T + 1)).state is State.STALLED
