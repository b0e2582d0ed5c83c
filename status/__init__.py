"""The status service: worker health from Kafka's committed offsets, end offsets and group
membership, as JSON, probes, Prometheus metrics and a dashboard page.

Imports only ``streams.settings`` and ``streams.topics`` from the rest of the project (and,
lazily, ``tracestore.reader`` for the upload lookup); never the faust app or agents.
    probe.py   one bounded round of Kafka queries     health.py  pure evaluation of offset windows
    report.py  the /status document                   service.py cache, one round per period
    metrics.py Prometheus text                        web.py     the aiohttp app and dashboard
"""
