"""Offsets that faust failed to commit get committed in the next round instead of being forgotten.

faust 0.15.3 (`Consumer._commit_offsets`) records offsets as committed even when Kafka
refused the commit (the group rebalanced while it was in flight), and it has already taken
them off its acked list (faust-streaming #316, fixed upstream after 0.15.3). If the
partition stays with this worker, the records up to there are neither committed nor
delivered again. Their lag never clears, and with priority on, a lower topic is held
back for good. This undoes both steps for a refused commit, so the next round (every
`broker_commit_interval`) sends the offsets again.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


class RetryingConsumer(faust_aiokafka.Consumer):
    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        before = {tp: self._committed_offset[tp] for tp in offsets}
        did_commit = bool(await super()._commit_offsets(
            offsets, start_new_transaction=start_new_transaction))
        if not did_commit:
            assigned = self.assignment()
            for tp, offset in offsets.items():
                if tp in assigned:  # a revoked one is read again by its next owner
                    self._restore(tp, before[tp], offset)
        return did_commit

    def _restore(self, tp: Any, committed: int | None, offset: int) -> None:
        self._committed_offset[tp] = committed
        # Back onto the acked list: from the last real commit (faust's _new_offset wants
        # no gap after it) or, with none, just the last one (no gap check then).
        start = committed if committed is not None else offset - 1
        index = self._acked_index[tp]
        acked = self._acked[tp]
        for o in range(start, offset):
            if o not in index:
                index.add(o)
                acked.append(o)


def install(app: Any) -> None:
    """Make ``app`` build its Kafka consumer from RetryingConsumer (before its first use)."""
    app.transport.Consumer = RetryingConsumer
