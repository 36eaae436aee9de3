"""The Kubernetes manifests are valid against Kubernetes' own schemas, offline, and wired up.

kubernetes-validate ships the API schemas, so this needs no cluster and no network.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from d2_triton import names
from d2_triton.cache import CHECKOUT
from d2_triton.gateway.app import create_app
from d2_triton.gateway.settings import GatewaySettings

MANIFESTS = CHECKOUT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.37.0"


def documents() -> list[dict]:
    """Every resource in the manifests kustomization.yaml lists."""
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        found += [doc for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]
    return found


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in documents() if doc["kind"] == kind}


@pytest.mark.parametrize(
    "document", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_each_resource_is_valid_against_the_kubernetes_schema(document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_every_manifest_file_is_in_the_kustomization():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_the_model_server_is_probed_scraped_and_given_shared_memory():
    pod = by_kind("Deployment")["d2-triton-model-server"]["spec"]["template"]
    server = pod["spec"]["containers"][0]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ports = {port["name"]: port["containerPort"] for port in server["ports"]}
    assert ports == names.DEFAULT_PORTS
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    assert {"cpu", "memory"} <= set(server["resources"]["requests"])
    assert {"cpu", "memory"} <= set(server["resources"]["limits"])
    mounts = {mount["mountPath"]: mount["name"] for mount in server["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


def test_the_repository_is_exported_once_and_mounted_read_only_by_every_replica():
    pod = by_kind("Deployment")["d2-triton-model-server"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod  # no replica exports
    server = pod["containers"][0]
    mount = next(m for m in server["volumeMounts"] if m["mountPath"] == "/models")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert mount["readOnly"] and volume["persistentVolumeClaim"]["readOnly"]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert by_kind("PersistentVolumeClaim")[claim]["spec"]["accessModes"] == ["ReadWriteMany"]
    job = by_kind("Job")["d2-triton-export"]["spec"]["template"]["spec"]
    export = job["containers"][0]
    assert export["image"].startswith("d2-triton/exporter") and server["image"].startswith(
        "d2-triton/model-server"
    )
    job_volume = next(v for v in job["volumes"] if v["name"] == export["volumeMounts"][0]["name"])
    assert job_volume["persistentVolumeClaim"]["claimName"] == claim
    assert export["volumeMounts"][0]["mountPath"] == "/models"


def test_no_manifest_lets_a_model_fall_back_to_random_weights():
    """Fail closed: D2T_ALLOW_RANDOM_WEIGHTS is 0 in the images and no manifest sets it."""
    for document in documents():
        spec = document["spec"].get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            names_set = {item["name"] for item in container.get("env", [])}
            assert "D2T_ALLOW_RANDOM_WEIGHTS" not in names_set, document["metadata"]["name"]


def test_the_gateway_reaches_the_model_server_service_and_autoscalers_target_deployments():
    services = by_kind("Service")
    gateway = by_kind("Deployment")["d2-triton-gateway"]["spec"]["template"]["spec"]
    env = {item["name"]: item.get("value") for item in gateway["containers"][0]["env"]}
    assert env["TRITON_HOST"] in services
    triton_ports = {
        port["name"]: port["port"] for port in services[env["TRITON_HOST"]]["spec"]["ports"]
    }
    assert int(env["TRITON_PORT"]) == triton_ports["http"]
    assert gateway["containers"][0]["ports"][0]["containerPort"] == names.GATEWAY_PORT
    deployments = by_kind("Deployment")
    for autoscaler in by_kind("HorizontalPodAutoscaler").values():
        assert autoscaler["spec"]["scaleTargetRef"]["name"] in deployments


def test_only_the_gateway_and_labelled_clients_reach_the_model_server_and_monitoring_metrics():
    policy = by_kind("NetworkPolicy")["d2-triton-model-server"]["spec"]
    pod = by_kind("Deployment")["d2-triton-model-server"]["spec"]["template"]
    assert policy["podSelector"]["matchLabels"] == pod["metadata"]["labels"]
    assert policy["policyTypes"] == ["Ingress"]
    inference, metrics = policy["ingress"]
    gateway = by_kind("Deployment")["d2-triton-gateway"]["spec"]["template"]["metadata"]
    assert [peer["podSelector"]["matchLabels"] for peer in inference["from"]] == [
        gateway["labels"],
        {"d2-triton/client": "true"},
    ]
    ports = names.DEFAULT_PORTS
    assert {p["port"] for p in inference["ports"]} == {ports["http"], ports["grpc"]}
    assert [p["port"] for p in metrics["ports"]] == [ports["metrics"]]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_the_model_server_and_the_gateway_share_the_admin_key_secret():
    deployments = by_kind("Deployment")
    sources = {}
    for name, variable in (
        ("d2-triton-model-server", "D2T_ADMIN_KEY"),
        ("d2-triton-gateway", "TRITON_ADMIN_KEY"),
    ):
        env = deployments[name]["spec"]["template"]["spec"]["containers"][0]["env"]
        sources[name] = next(item for item in env if item["name"] == variable)["valueFrom"]
    assert len({str(source) for source in sources.values()}) == 1


def test_the_gateway_is_scraped_at_its_metrics_endpoint():
    pod = by_kind("Deployment")["d2-triton-gateway"]["spec"]["template"]
    ports = {port["name"]: port["containerPort"] for port in pod["spec"]["containers"][0]["ports"]}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(ports["http"])
    paths = create_app(GatewaySettings()).openapi()["paths"]
    assert annotations["prometheus.io/path"] in paths
