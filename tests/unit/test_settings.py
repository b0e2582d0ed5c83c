from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from streams.settings import KafkaSettings, Settings
from streams.worker.app import broker_credentials, broker_url


def test_env_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("INGEST_WORKER__CONCURRENCY", "7")
    monkeypatch.setenv("INGEST_KAFKA__SASL_PASSWORD", "s3cret")
    s = Settings()
    assert s.kafka.bootstrap_servers == "k1:9092,k2:9092" and s.worker.concurrency == 7
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())


def test_sasl_ssl_reaches_both_clients(tmp_path: Path) -> None:
    import faust

    ca = tmp_path / "ca.pem"
    # any valid CA bundle will do for building a context
    ca.write_bytes(Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
                   .read_bytes())
    k = KafkaSettings(bootstrap_servers="a:9093,b:9093", security_protocol="SASL_SSL",
                      sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="p",  # type: ignore[arg-type]
                      ssl_cafile=ca)
    conf = k.confluent_config()
    assert conf["security.protocol"] == "sasl_ssl" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "u" and conf["sasl.password"] == "p"
    assert conf["ssl.ca.location"] == str(ca)
    creds = broker_credentials(k)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "u" and creds.password == "p" and creds.ssl_context is not None
    assert broker_url(k) == "kafka://a:9093;kafka://b:9093"


def test_plaintext_has_no_credentials() -> None:
    assert broker_credentials(KafkaSettings()) is None
