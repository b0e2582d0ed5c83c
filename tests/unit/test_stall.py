"""The stall rule: records waiting, no job taken, no job finished, for a whole window."""

from __future__ import annotations

from streams.worker.stall import Stall


def test_waiting_without_progress_for_the_window_is_a_stall_once() -> None:
    s = Stall(after_s=20)
    assert not s.check(0, waiting=5, in_flight=0, done=3)
    assert not s.check(19, waiting=5, in_flight=0, done=3)
    assert s.check(20, waiting=5, in_flight=0, done=3)
    # the next spell starts after it: not again on the next check
    assert not s.check(21, waiting=5, in_flight=0, done=3)
    assert s.check(40, waiting=5, in_flight=0, done=3)


def test_progress_or_a_running_job_or_nothing_waiting_is_no_stall() -> None:
    s = Stall(after_s=20)
    assert not s.check(0, waiting=5, in_flight=0, done=3)
    assert not s.check(15, waiting=5, in_flight=0, done=4)  # a job finished: the spell restarts
    assert not s.check(30, waiting=5, in_flight=0, done=4)
    assert s.check(35, waiting=5, in_flight=0, done=4)
    s = Stall(after_s=20)
    for t in range(0, 100, 5):  # a long job runs: its records wait behind it
        assert not s.check(t, waiting=5, in_flight=1, done=0)
    s = Stall(after_s=20)
    for t in range(0, 100, 5):  # idle and nothing waiting
        assert not s.check(t, waiting=0, in_flight=0, done=0)
    s = Stall(after_s=20)
    assert not s.check(0, waiting=5, in_flight=0, done=0)
    assert not s.check(10, waiting=0, in_flight=0, done=0)  # the lag cleared: spell over
    assert not s.check(25, waiting=5, in_flight=0, done=0)
    assert s.check(45, waiting=5, in_flight=0, done=0)
