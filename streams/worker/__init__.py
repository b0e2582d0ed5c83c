"""The worker process: the faust app and its agents (``app``), the per-event runner that
routes failures (``runner``), the priority gate, limits, graceful stop, heartbeats and the
liveness endpoint (``runtime``, ``gate``), the delivery ledger (``deliveries``) and the jobs
themselves (``jobs/``). The status service never imports it.
"""
