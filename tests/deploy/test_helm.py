"""The Helm chart: lint, render, Kubernetes schemas, and what the rendered objects promise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from pydantic import ValidationError

from streams.settings import Settings
from streams.topics import JOB_TOPICS, Topics

from . import crds
from .helpers import ALL_FEATURES, CHART, ROOT, by_kind, containers, env_of, helm, render, settings_env_names
from .routes import served_paths

# Two supported minors at least: the oldest the chart declares support for and a recent one.
KUBE_VERSIONS = ["1.29.0", "1.31.0", "1.34.0"]
VALUES = {"default": [], "all-features": [ALL_FEATURES]}
SECRET_PLACEHOLDER = "from-a-secret"


def settings_for(
    manifests: list[dict[str, Any]], container: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Parse a container's environment with the real settings class."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("INGEST_"):
            monkeypatch.delenv(name)
    for name, value in env_of(manifests, container).items():
        monkeypatch.setenv(name, SECRET_PLACEHOLDER if value is None else value)
    return Settings()


def unknown_env_names(manifests: list[dict[str, Any]]) -> set[str]:
    known = settings_env_names()
    names: set[str] = set()
    for _, c in containers(manifests):
        names |= set(env_of(manifests, c))
    for m in by_kind(manifests, "ConfigMap") + by_kind(manifests, "Secret"):
        if m["metadata"]["name"].endswith(("-keda", "-alerts")):
            continue  # KEDA's own parameters, the alert rule file: not env
        names |= set((m.get("data") or {}) | (m.get("stringData") or {}))
    return {n for n in names if n.upper() not in known}


def container_named(manifests: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [c for _, c in containers(manifests) if c["name"] == name]


# -- helm itself -------------------------------------------------------------------------
@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_lint_strict(helm_bin: str, values: list[Path]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for v in values:
        args += ["-f", str(v)]
    proc = helm(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_manifests_match_kubernetes_schemas(helm_bin: str, values: list[Path], kube: str) -> None:
    manifests = render(values, kube_version=kube)
    checked = 0
    for m in manifests:
        if m["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: no schema in the Kubernetes set; checked in test_keda_*
        if crds.known(m):
            continue  # checked against its vendored CRD in test_custom_resources_match_their_crds
        # strict: an unknown field (a typo like "livenesProbe") is an error, not ignored.
        kubernetes_validate.validate(m, kube, strict=True)
        checked += 1
    assert checked >= 8


def test_schema_validation_catches_a_bad_manifest(default_manifests: list[dict[str, Any]]) -> None:
    deployment = json.loads(json.dumps(by_kind(default_manifests, "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


def test_custom_resources_match_their_crds(all_manifests: list[dict[str, Any]]) -> None:
    custom = [m for m in all_manifests if m["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {m["kind"] for m in custom} == {"ServiceMonitor", "PrometheusRule"}
    for m in custom:
        assert crds.known(m), f"no vendored CRD for {m['apiVersion']} {m['kind']}"
        assert crds.errors(m) == [], m["kind"]


def test_crd_check_catches_a_bad_custom_resource(all_manifests: list[dict[str, Any]]) -> None:
    (sm,) = json.loads(json.dumps(by_kind(all_manifests, "ServiceMonitor")))
    sm["spec"]["endpoints"][0]["authorisation"] = sm["spec"]["endpoints"][0].pop("authorization")
    sm["spec"]["endpoints"][0]["interval"] = "30 seconds"
    found = crds.errors(sm)
    assert any("authorisation" in e for e in found), found
    assert any(e.startswith("spec/endpoints/0/interval") for e in found), found


def test_vendored_crds_are_the_recorded_ones() -> None:
    assert crds.checksums() == crds.VENDORED, "a CRD changed; record where it came from in VENDORED.md"


BAD_VALUES = {
    "unknown topic": (["--set-json", 'workers=[{"name":"x","topics":["ingset"]}]'], "/workers/0/topics/0"),
    "bad group name": (
        ["--set-json", 'workers=[{"name":"Preview_1","topics":["ingest"]}]'],
        "/workers/0/name",
    ),
    "keda above partitions": (
        [
            "--set",
            "workerDefaults.autoscaling.mode=keda",
            "--set",
            "workerDefaults.autoscaling.maxReplicas=13",
        ],
        "exceeds kafka.partitions=12",
    ),
    "sasl without mechanism": (["--set", "kafka.securityProtocol=SASL_SSL"], "kafka.sasl.mechanism"),
    "mechanism without sasl": (["--set", "kafka.sasl.mechanism=PLAIN"], "SASL_PLAINTEXT"),
    "tls without secret": (
        ["--set", "kafka.securityProtocol=SSL", "--set", "kafka.tls.enabled=true"],
        "secretName",
    ),
    "zero concurrency": (["--set", "workerDefaults.concurrency=0"], "concurrency"),
    "extraEnv outside settings prefix": (
        ["--set-json", 'extraEnv=[{"name":"HOME","value":"/"}]'],
        "extraEnv",
    ),
    "privilege escalation": (
        ["--set", "securityContext.allowPrivilegeEscalation=true"],
        "allowPrivilegeEscalation",
    ),
    "private metrics without a token": (["--set", "status.metricsPublic=false"], "needs a token"),
    "duplicate group": (
        ["--set-json", 'workers=[{"name":"a","topics":["ingest"]},{"name":"a","topics":["ingest"]}]'],
        "appears twice",
    ),
}


@pytest.mark.parametrize("args,message", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_fail_at_install_time(helm_bin: str, args: list[str], message: str) -> None:
    proc = helm("template", "rel", str(CHART), *args)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert message in proc.stderr, proc.stderr


def test_values_schema_topics_are_the_declared_job_topics() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    enum = schema["properties"]["workers"]["items"]["properties"]["topics"]["items"]["enum"]
    assert set(enum) == set(JOB_TOPICS.values())


# -- what the rendered objects promise ------------------------------------------------------
def test_every_env_name_is_a_settings_field(manifests: list[dict[str, Any]]) -> None:
    assert unknown_env_names(manifests) == set()


def test_env_check_catches_a_misspelt_name(helm_bin: str) -> None:
    rendered = render(None, "--set-json", 'extraEnv=[{"name":"INGEST_WORKER__TIMEOUT","value":"5"}]')
    assert unknown_env_names(rendered) == {"INGEST_WORKER__TIMEOUT"}


def test_env_values_parse_with_the_settings_class(
    manifests: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for _, c in containers(manifests):
        with monkeypatch.context() as mp:
            try:
                settings_for(manifests, c, mp)
            except ValidationError as exc:
                pytest.fail(f"container {c['name']}: the chart's env is not valid settings: {exc}")


def test_workers_are_a_deployment_per_group_in_priority_order(
    default_manifests: list[dict[str, Any]],
) -> None:
    topics = {
        d["metadata"]["name"].rsplit("worker-", 1)[1]: c["args"]
        for d, c in containers(default_manifests)
        if c["name"] == "worker"
    }
    assert topics == {
        "ingest": ["worker", "--topics", "ingest"],
        "preview": ["worker", "--topics", "ingest-preview"],
        "enhance": ["worker", "--topics", "ingest-enhance"],
    }
    # Topic names the CLI accepts, in the order given.
    t = Topics(prefix="", partitions=12)
    assert [j.value for j in t.parse_jobs("ingest-preview,ingest")] == ["preview", "ingest"]


def _port(container: dict[str, Any], ref: int | str) -> int:
    if isinstance(ref, int):
        return ref
    named = [p["containerPort"] for p in container.get("ports", []) if p["name"] == ref]
    assert named, f"probe port {ref!r} is not a port of container {container['name']}"
    port: int = named[0]
    return port


def test_probes_hit_routes_the_services_serve(
    manifests: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    served = {"status": served_paths(ROOT / "status"), "worker": served_paths(ROOT / "streams")}
    probed = 0
    for _, c in containers(manifests):
        with monkeypatch.context() as mp:
            s = settings_for(manifests, c, mp)
        expected_port = {"status": s.status.port, "worker": s.worker.health_port}.get(c["name"])
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.get(kind)
            if probe is None:
                continue
            probed += 1
            get = probe["httpGet"]
            assert get["path"] in served[c["name"]], (
                f"{c['name']} {kind} GET {get['path']}: not a route of {c['name']} "
                f"(served: {sorted(served[c['name']])})"
            )
            assert _port(c, get["port"]) == expected_port
    assert probed >= 6
    status = container_named(manifests, "status")[0]
    assert {status["livenessProbe"]["httpGet"]["path"], status["readinessProbe"]["httpGet"]["path"]} == {
        "/healthz",
        "/readyz",
    }


def test_status_service_reaches_the_http_port(manifests: list[dict[str, Any]]) -> None:
    (svc,) = by_kind(manifests, "Service")
    status = container_named(manifests, "status")[0]
    names = {p["name"] for p in status["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names
    deployments = [
        d
        for d in by_kind(manifests, "Deployment")
        if d["spec"]["template"]["metadata"]["labels"].items() >= svc["spec"]["selector"].items()
    ]
    assert [d["metadata"]["name"] for d in deployments] == ["rel-prophoto-ingest-status"]


def test_grace_period_above_job_timeout(
    manifests: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = [(d, c) for d, c in containers(manifests) if c["name"] == "worker"]
    assert workers
    for d, c in workers:
        with monkeypatch.context() as mp:
            timeout = settings_for(manifests, c, mp).worker.timeout_s
        grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > timeout, f"{d['metadata']['name']}: grace {grace} s <= job timeout {timeout} s"


def _partitions(manifests: list[dict[str, Any]]) -> int:
    (cm,) = by_kind(manifests, "ConfigMap")
    return int(cm["data"]["INGEST_KAFKA__PARTITIONS"])


def test_keda_scaled_objects_stay_within_partitions(all_manifests: list[dict[str, Any]]) -> None:
    scaled = by_kind(all_manifests, "ScaledObject")
    assert len(scaled) == 2
    partitions = _partitions(all_manifests)
    (cm,) = by_kind(all_manifests, "ConfigMap")
    topics = Topics(prefix=cm["data"]["INGEST_KAFKA__TOPIC_PREFIX"], partitions=partitions)
    job_topics = {topics.job(j) for j in JOB_TOPICS}
    deployments = {d["metadata"]["name"] for d in by_kind(all_manifests, "Deployment")}
    auths = {a["metadata"]["name"] for a in by_kind(all_manifests, "TriggerAuthentication")}
    for so in scaled:
        spec = so["spec"]
        assert spec["maxReplicaCount"] <= partitions
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["scaleTargetRef"]["name"] in deployments
        for trig in spec["triggers"]:
            assert trig["type"] == "kafka"
            meta = trig["metadata"]
            assert meta["consumerGroup"] == cm["data"]["INGEST_KAFKA__GROUP_ID"]
            assert meta["topic"] in job_topics
            assert int(meta["lagThreshold"]) >= 1
            assert meta["bootstrapServers"] == cm["data"]["INGEST_KAFKA__BOOTSTRAP_SERVERS"]
            assert trig["authenticationRef"]["name"] in auths


def test_keda_trigger_authentication_references_exist(all_manifests: list[dict[str, Any]]) -> None:
    (auth,) = by_kind(all_manifests, "TriggerAuthentication")
    params = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(params) == {"tls", "sasl", "username", "password", "ca", "cert", "key"}
    keda_secret = next(s for s in by_kind(all_manifests, "Secret") if s["metadata"]["name"].endswith("-keda"))
    assert keda_secret["stringData"]["sasl"] == "scram_sha512"
    assert keda_secret["stringData"]["tls"] == "enable"
    assert params["password"]["name"] == "kafka-credentials"


def test_hpa_stays_within_partitions(all_manifests: list[dict[str, Any]]) -> None:
    (hpa,) = by_kind(all_manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] <= _partitions(all_manifests)
    target = hpa["spec"]["scaleTargetRef"]["name"]
    (deployment,) = [d for d in by_kind(all_manifests, "Deployment") if d["metadata"]["name"] == target]
    assert "replicas" not in deployment["spec"], "an autoscaled Deployment must leave replicas to it"


def test_containers_are_locked_down(manifests: list[dict[str, Any]]) -> None:
    for d, c in containers(manifests):
        pod = d["spec"]["template"]["spec"]
        where = f"{d['metadata']['name']}/{c['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] > 0, where
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp must be a writable emptyDir"
        assert c["resources"]["requests"] and c["resources"]["limits"], where
        assert pod["automountServiceAccountToken"] is False, where


def test_every_workload_has_a_disruption_budget(manifests: list[dict[str, Any]]) -> None:
    pdbs = by_kind(manifests, "PodDisruptionBudget")
    for d in by_kind(manifests, "Deployment"):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert any(labels.items() >= p["spec"]["selector"]["matchLabels"].items() for p in pdbs), d[
            "metadata"
        ]["name"]


def test_ingress_routes_to_the_status_service(all_manifests: list[dict[str, Any]]) -> None:
    (ing,) = by_kind(all_manifests, "Ingress")
    (svc,) = by_kind(all_manifests, "Service")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == svc["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}


def _notes(helm_bin: str, tmp_path: Path, *args: str) -> str:
    """Render NOTES.txt (helm template skips it) by wrapping it into a throwaway template."""
    import yaml

    chart = tmp_path / f"chart{len(list(tmp_path.iterdir()))}"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "notes-under-test.yaml").write_text(
        '{{- define "test.notes" }}' + notes + '{{- end }}\nnotes: {{ include "test.notes" . | toJson }}\n'
    )
    proc = helm("template", "rel", str(chart), "--show-only", "templates/notes-under-test.yaml", *args)
    assert proc.returncode == 0, proc.stderr
    text: str = yaml.safe_load(proc.stdout)["notes"]
    return text


def test_notes_tell_how_to_reach_the_dashboard(
    helm_bin: str, tmp_path: Path, default_manifests: list[dict[str, Any]]
) -> None:
    (svc,) = by_kind(default_manifests, "Service")
    text = _notes(helm_bin, tmp_path)
    assert f"port-forward service/{svc['metadata']['name']} 8080:{svc['spec']['ports'][0]['port']}" in text
    with_ingress = _notes(helm_bin, tmp_path, "-f", str(ALL_FEATURES))
    assert "https://ingest-status.prophoto.example.com/" in with_ingress
    demo = _notes(helm_bin, tmp_path, "--set", "storage.persistence.enabled=false")
    assert "WARNING: storage is an emptyDir" in demo


# -- the status service's bearer token ---------------------------------------------------------
TOKEN = "tok-3f1c0a9e-not-in-any-configmap"


def _token_ref(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (status,) = container_named(manifests, "status")
    refs = [e for e in status.get("env", []) if e["name"] == "INGEST_STATUS__TOKEN"]
    assert len(refs) == 1, status.get("env")
    assert set(refs[0]) == {"name", "valueFrom"}, "the token must come from a Secret, not a literal value"
    ref: dict[str, Any] = refs[0]["valueFrom"]["secretKeyRef"]
    return ref


def _non_secret_text(manifests: list[dict[str, Any]]) -> str:
    return json.dumps([m for m in manifests if m["kind"] != "Secret"])


def test_status_token_from_a_value_goes_through_the_charts_secret(helm_bin: str) -> None:
    manifests = render(None, "--set", f"status.token.value={TOKEN}")
    ref = _token_ref(manifests)
    (secret,) = [s for s in by_kind(manifests, "Secret") if s["metadata"]["name"] == ref["name"]]
    assert secret["stringData"][ref["key"]] == TOKEN
    # Nowhere else: not in the ConfigMap, not in a pod spec, not in any other container.
    assert TOKEN not in _non_secret_text(manifests)
    for _, c in containers(manifests):
        if c["name"] != "status":
            assert "INGEST_STATUS__TOKEN" not in env_of(manifests, c), c["name"]
    (cm,) = by_kind(manifests, "ConfigMap")
    assert "INGEST_STATUS__TOKEN" not in cm["data"]
    assert cm["data"]["INGEST_STATUS__METRICS_PUBLIC"] == "true"


def test_status_token_from_an_existing_secret(helm_bin: str) -> None:
    manifests = render(
        None,
        "--set",
        f"status.token.value={TOKEN}",  # existingSecret wins, as for the passwords
        "--set",
        "status.token.existingSecret=ops-status",
        "--set",
        "status.token.existingSecretKey=bearer",
        "--set",
        "status.metricsPublic=false",
    )
    assert _token_ref(manifests) == {"name": "ops-status", "key": "bearer"}
    assert TOKEN not in json.dumps(manifests), "the chart stored a value it was told to take elsewhere"
    (cm,) = by_kind(manifests, "ConfigMap")
    assert cm["data"]["INGEST_STATUS__METRICS_PUBLIC"] == "false"


def test_no_token_no_env_and_no_secret(default_manifests: list[dict[str, Any]]) -> None:
    for _, c in containers(default_manifests):
        assert "INGEST_STATUS__TOKEN" not in env_of(default_manifests, c), c["name"]
    assert by_kind(default_manifests, "Secret") == []


def test_token_and_heartbeat_reach_the_settings(
    all_manifests: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (status,) = container_named(all_manifests, "status")
    with monkeypatch.context() as mp:
        s = settings_for(all_manifests, status, mp)
    assert s.status.token is not None and s.status.token.get_secret_value() == SECRET_PLACEHOLDER
    assert s.status.metrics_public is False
    assert s.status.sample_interval_s == 2.5
    beats = {}
    for d, c in containers(all_manifests):
        if c["name"] == "worker":
            with monkeypatch.context() as mp:
                group = d["metadata"]["name"].rsplit("worker-", 1)[1]
                beats[group] = settings_for(all_manifests, c, mp).worker.heartbeat_s
    assert beats == {"ingest": 3.0, "preview": 3.0, "enhance": 10.0}


# -- the ServiceMonitor ----------------------------------------------------------------------
def test_service_monitor_scrapes_every_status_replica_with_the_token(
    all_manifests: list[dict[str, Any]],
) -> None:
    (sm,) = by_kind(all_manifests, "ServiceMonitor")
    (svc,) = by_kind(all_manifests, "Service")
    assert svc["metadata"]["labels"].items() >= sm["spec"]["selector"]["matchLabels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == ["ingest"]
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and "/metrics" in served_paths(ROOT / "status")
    # all-features: metricsPublic false, the token in the user's Secret: the scrape sends it.
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": _token_ref(all_manifests),
    }
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_service_monitor_sends_no_token_while_metrics_are_public(helm_bin: str) -> None:
    manifests = render(
        None, "--set", "status.serviceMonitor.enabled=true", "--set", f"status.token.value={TOKEN}"
    )
    (sm,) = by_kind(manifests, "ServiceMonitor")
    assert "authorization" not in sm["spec"]["endpoints"][0]
    assert by_kind(render(), "ServiceMonitor") == []


def test_notes_say_where_the_status_token_is(helm_bin: str, tmp_path: Path) -> None:
    text = _notes(helm_bin, tmp_path, "--set", "status.token.existingSecret=ops-status")
    assert "key status-token of Secret ops-status" in text
    assert "/readyz and /metrics needs" in text
    private = _notes(helm_bin, tmp_path, "-f", str(ALL_FEATURES))
    assert "/readyz needs" in private and "key token of Secret status-credentials" in private
    from_values = _notes(helm_bin, tmp_path, "--set", f"status.token.value={TOKEN}")
    assert "prefer status.token.existingSecret" in from_values and TOKEN not in from_values
    assert "Bearer" not in _notes(helm_bin, tmp_path)


def test_status_probes_need_no_token(all_manifests: list[dict[str, Any]]) -> None:
    """The kubelet sends no Authorization header: with a token set, the probes must hit paths
    the status service leaves open (status.web.OPEN_PATHS)."""
    from status.web import OPEN_PATHS

    (status,) = container_named(all_manifests, "status")
    assert "INGEST_STATUS__TOKEN" in env_of(all_manifests, status)
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind in status:
            assert status[kind]["httpGet"]["path"] in OPEN_PATHS, kind
