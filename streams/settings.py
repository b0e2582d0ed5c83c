"""All configuration, read once from the environment (prefix ``INGEST_``) at the entry point.

Nested groups use ``__``: ``INGEST_KAFKA__BOOTSTRAP_SERVERS``, ``INGEST_STORAGE__ROOT``.
Nothing else in the project reads ``os.environ``; settings objects are passed down.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Group):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "prophoto-ingest"
    # Prefixes every topic name, so tests and tenants can share one cluster.
    topic_prefix: str = ""
    partitions: int = Field(12, ge=1, le=1000)
    replication_factor: int = Field(1, ge=1)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    request_timeout_s: float = Field(10.0, gt=0)
    # How long the group waits for a silent worker (SIGKILL, OOM, a lost host) before its
    # partitions go to the others; faust's default is 60 s of standstill. The broker's
    # group.min.session.timeout.ms (6 s by default) is the floor.
    session_timeout_s: float = Field(15.0, ge=1)
    # retention.ms of the dead-letter topics: -1 keeps a failure until someone resolves it.
    dead_letter_retention_ms: int = Field(-1, ge=-1)

    def confluent_config(self) -> dict[str, Any]:
        """librdkafka configuration shared by every confluent-kafka client."""
        from .logs import LIBRDKAFKA_LOG

        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
            "logger": LIBRDKAFKA_LOG,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if self.ssl_cafile:
            conf["ssl.ca.location"] = str(self.ssl_cafile)
        if self.ssl_certfile:
            conf["ssl.certificate.location"] = str(self.ssl_certfile)
        if self.ssl_keyfile:
            conf["ssl.key.location"] = str(self.ssl_keyfile)
        return conf


class StorageSettings(_Group):
    root: Path = Path("var/storage")


class ClickHouseSettings(_Group):
    backend: Literal["chdb", "server"] = "chdb"
    # chDB data directory (embedded default).
    path: Path = Path("var/traces.chdb")
    host: str = "127.0.0.1"
    port: int = 8123
    username: str = "default"
    password: SecretStr = SecretStr("")
    database: str = "prophoto"
    secure: bool = False
    ttl_days: int = Field(90, ge=1)
    # Large batches are what make chDB fast (measured: 5,000 -> ~62 k rows/s, 50,000 -> ~118 k);
    # the interval still bounds how long a trace waits at low traffic.
    flush_rows: int = Field(50_000, ge=1)
    flush_interval_s: float = Field(1.0, gt=0)
    # The trace sink serves read queries on 127.0.0.1:query_port (0 = any free port; readers
    # find it in the store's lock file), and waits this long for the store's lock.
    query_port: int = Field(0, ge=0, le=65535)
    lock_timeout_s: float = Field(30.0, gt=0)


class StatusSettings(_Group):
    host: str = "127.0.0.1"
    port: int = 8080
    # One round of Kafka queries per interval, in the background, whether or not anyone asks.
    sample_interval_s: float = Field(5.0, gt=0)
    stall_threshold_s: float = Field(30.0, gt=0)
    kafka_timeout_s: float = Field(1.5, gt=0)
    # A bearer token every request needs but /healthz, /readyz (and /metrics while
    # metrics_public); none: the service trusts its network (it binds to loopback).
    token: SecretStr | None = None
    metrics_public: bool = True

    @field_validator("token")
    @classmethod
    def _empty_token_is_none(cls, v: SecretStr | None) -> SecretStr | None:
        # compose passes ${STATUS_TOKEN:-}: an empty token is no token, not the empty one
        return v if v is not None and v.get_secret_value() else None


class WorkerSettings(_Group):
    id: str = Field(default_factory=lambda: f"{socket.gethostname()}")
    concurrency: int = Field(2, ge=1, le=64)
    tries: int = Field(3, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    log_json: bool = False
    # Lag (records) on a higher-priority topic above which lower-priority topics pause.
    priority_lag_threshold: int = Field(0, ge=0)
    # How long a stopping worker waits for in-flight jobs; default: the job timeout.
    grace_s: float | None = Field(None, gt=0)
    # Deliveries without an outcome (each died with its worker) before a record is a
    # dead letter instead of another try: a poison record must not crash-loop a partition.
    max_deliveries: int = Field(3, ge=1)
    # Seconds between the worker's heartbeats (streams/heartbeat.py) on the heartbeats topic.
    heartbeat_s: float = Field(3.0, gt=0)
    # Port for the worker's own liveness endpoint (GET /healthz); 0 turns it off.
    health_port: int = Field(0, ge=0, le=65535)


class ImagingSettings(_Group):
    preview_long_edge: int = Field(2048, ge=16)
    enhance_long_edge: int = Field(4096, ge=16)
    thumbnail_size: int = Field(400, ge=16)
    thumbnail_fit: Literal["cover", "contain"] = "cover"
    preview_quality: int = Field(85, ge=1, le=100)
    enhance_quality: int = Field(92, ge=1, le=100)
    max_pixels: int = Field(200_000_000, ge=1)
    max_file_bytes: int = Field(512 * 1024 * 1024, ge=1)
    max_frames: int = Field(64, ge=1)
    exiftool_timeout_s: float = Field(20.0, gt=0)
    decode_timeout_s: float = Field(60.0, gt=0)
    strip_gps: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INGEST_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    kafka: KafkaSettings = KafkaSettings()
    storage: StorageSettings = StorageSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    status: StatusSettings = StatusSettings()
    worker: WorkerSettings = WorkerSettings()
    imaging: ImagingSettings = ImagingSettings()
    log_level: str = "INFO"


def load(**overrides: Any) -> Settings:
    """Read settings from the environment; the only place that does."""
    return Settings(**overrides)
