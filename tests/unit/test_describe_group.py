"""A group's description while its coordinator is busy (a fresh broker, a restart) is
asked again, not reported as the broker being away; other errors are not retried."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace as NS
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams import replay
from streams.kafka import describe_group


class FakeAdmin:
    def __init__(self, errors: list[int]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> dict[str, Any]:
        self.calls += 1
        fut: Future[Any] = Future()
        if self.errors:
            fut.set_exception(KafkaException(KafkaError(self.errors.pop(0))))
        else:
            fut.set_result(NS(members=[], state=NS(name="EMPTY")))
        return {groups[0]: fut}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_a_busy_coordinator_is_asked_again() -> None:
    admin = FakeAdmin([KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS])
    clock = Clock()
    desc = describe_group(admin, "g", 10, clock=clock, sleep=clock.sleep)
    assert desc.state.name == "EMPTY" and admin.calls == 3


def test_a_coordinator_busy_past_the_timeout_raises_its_error() -> None:
    admin = FakeAdmin([KafkaError.NOT_COORDINATOR] * 100)
    clock = Clock()
    with pytest.raises(KafkaException) as exc:
        describe_group(admin, "g", 2, clock=clock, sleep=clock.sleep)
    assert exc.value.args[0].code() == KafkaError.NOT_COORDINATOR
    assert 5 <= admin.calls <= 11


def test_other_errors_are_not_retried() -> None:
    admin = FakeAdmin([KafkaError.GROUP_AUTHORIZATION_FAILED])
    clock = Clock()
    with pytest.raises(KafkaException):
        describe_group(admin, "g", 10, clock=clock, sleep=clock.sleep)
    assert admin.calls == 1


def test_clear_on_a_fresh_broker_is_not_refused_for_a_busy_coordinator() -> None:
    """``clear`` asks the group for members first; on a broker that has just started the
    coordinator answers NOT_COORDINATOR for a moment, which is not "Kafka unavailable"."""
    admin = FakeAdmin([KafkaError.NOT_COORDINATOR])
    replay._refuse_if_members(admin, "g", 10)  # an empty group: no refusal, no error
    assert admin.calls == 2
