"""The trace store: trace events from the traces topic, batched into ClickHouse, and read back.

(Design notes are filled in as the package lands; see reader.py for the read API.)
"""
