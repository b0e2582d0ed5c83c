"""The ports a test's private broker listens on must stay its own while it is stopped.

A stopped broker's port pair is free, and any outgoing connection on the machine may be
handed a local port from Linux's ephemeral range (ip_local_port_range). A private broker
whose ports lie in that range can find one taken when it starts again: CI saw
"Socket server failed to bind to 127.0.0.1:56748: Address already in use" on the
controller port of test_broker_going_away_is_unknown_then_recovers's broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import broker

RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    return int(RANGE.read_text().split()[0])


def test_private_broker_ports_lie_below_the_ephemeral_range() -> None:
    low = _ephemeral_low()
    first = broker.DEFAULT_PORT_START
    # the whole span _free_port_pair may walk, and room for scripts/test's further passes
    # (KAFKA_ALSO_VERSIONS), each of which starts 200 ports on
    last = first + broker.SEARCH_SPAN + 200 * 4
    assert last < low, (first, last, low)


def test_the_free_pair_search_stays_in_its_span(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker, "_port_taken", lambda port: True)
    with pytest.raises(broker.BrokerFailed):
        broker._free_port_pair(broker.DEFAULT_PORT_START)


def test_only_the_support_module_starts_a_broker_of_a_tests_own() -> None:
    """A test module with a broker fixture of its own (ports from bind(0), in the ephemeral
    range) is how CI's failure came about: tests/support/broker.py is the one place."""
    tests = Path(__file__).resolve().parents[1]
    here = Path(__file__).resolve()
    texts = {p: p.read_text() for p in tests.rglob("*.py") if p != here}
    starters = sorted(str(p.relative_to(tests)) for p, text in texts.items()
                      if '"scripts" / "kafka"' in text or "KAFKA_PORT" in text)
    assert starters == ["support/broker.py"], starters
