"""The Kubernetes manifests validate offline against real schemas, and expose nothing without auth.

Core objects: the strict schemas ``kubernetes-validate`` ships. RayCluster / RayJob: accord's own
strict schema of the KubeRay v1 fields it uses (infra/schemas/kuberay-v1.yaml), whose pod templates
resolve to the strict core PodTemplateSpec, so every container, volume and securityContext field is
checked too.
"""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ._infra import INFRA, K8S, K8S_VERSION, SCHEMAS, k8s_objects, kuberay_validator, pod_templates

OBJECTS = list(k8s_objects())
RAY_KINDS = {"RayCluster", "RayJob"}
TOKEN_SECRET = "accord-ray-token"


def _id(item) -> str:
    path, obj = item
    return f"{path.name}:{obj['kind']}/{obj['metadata']['name']}"


def _ray_objects() -> list[dict]:
    return [obj for _, obj in OBJECTS if obj["kind"] in RAY_KINDS]


def test_manifests_present() -> None:
    kinds = {obj["kind"] for _, obj in OBJECTS}
    assert {"RayCluster", "RayJob", "ServiceAccount", "PersistentVolumeClaim", "NetworkPolicy"} <= kinds


@pytest.mark.parametrize("item", [i for i in OBJECTS if i[1]["kind"] not in RAY_KINDS], ids=_id)
def test_core_objects_validate_strict(item) -> None:
    _, obj = item
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("item", [i for i in OBJECTS if i[1]["kind"] in RAY_KINDS], ids=_id)
def test_kuberay_objects_validate(item) -> None:
    _, obj = item
    validator = kuberay_validator(obj["kind"])
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_kuberay_schema_is_ours_and_strict() -> None:
    schema = yaml.safe_load((SCHEMAS / "kuberay-v1.yaml").read_text())
    for kind in ("RayCluster", "RayJob"):
        assert schema["$defs"][kind]["additionalProperties"] is False
    assert schema["$defs"]["podTemplate"]["$ref"].endswith("io.k8s.api.core.v1.PodTemplateSpec")


@pytest.mark.parametrize(
    "break_it",
    [
        lambda o: o["spec"].__setitem__("authOption", {"mode": "token"}),  # typo'd field
        lambda o: o["spec"]["authOptions"].__setitem__("mode", "password"),  # not an enum value
        lambda o: o["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].__setitem__("imagee", "x"),
        lambda o: o["spec"]["workerGroupSpecs"][0].pop("groupName"),  # required
        lambda o: o["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"].__setitem__(
            "limits", "lots"
        ),
    ],
    ids=["unknown-field", "bad-enum", "bad-container-field", "missing-required", "bad-resources"],
)
def test_schema_rejects_broken_raycluster(break_it) -> None:
    """The validation is real: each small corruption of the good manifest fails."""
    (obj,) = [o for o in _ray_objects() if o["kind"] == "RayCluster"]
    broken = copy.deepcopy(obj)
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        kuberay_validator("RayCluster").validate(broken)


def test_core_schema_rejects_broken_object() -> None:
    (pvc,) = [o for _, o in OBJECTS if o["kind"] == "PersistentVolumeClaim"]
    broken = copy.deepcopy(pvc)
    broken["spec"]["accessModes"] = "ReadOnlyMany"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


# --- nothing exposed without authentication --------------------------------------------------------


def test_no_public_service_or_ingress() -> None:
    for path, obj in OBJECTS:
        assert obj["kind"] not in {"Ingress", "Gateway", "HTTPRoute"}, path
        if obj["kind"] == "Service":
            assert obj["spec"].get("type", "ClusterIP") == "ClusterIP", path


@pytest.mark.parametrize("obj", _ray_objects(), ids=lambda o: o["kind"])
def test_ray_head_is_cluster_internal_with_token_auth(obj) -> None:
    cluster = obj["spec"].get("rayClusterSpec", obj["spec"])
    assert cluster["authOptions"] == {"mode": "token", "secretName": TOKEN_SECRET}
    head = cluster["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert head.get("enableIngress", False) is False
    assert (
        "headService" not in head
        or head["headService"].get("spec", {}).get("type", "ClusterIP") == "ClusterIP"
    )
    for where, template in pod_templates(obj):
        for c in template["spec"]["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            assert env["RAY_AUTH_MODE"]["value"] == "token", (where, c["name"])
            ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": TOKEN_SECRET, "key": "auth_token"}, (where, c["name"])
            for port in c.get("ports", []):
                assert "hostPort" not in port, "a hostPort would expose the port on the node"
        assert not template["spec"].get("hostNetwork", False)


def test_no_token_committed() -> None:
    for path, obj in OBJECTS:
        assert obj["kind"] != "Secret", f"{path}: create the token Secret out of band (infra/README.md)"


def test_network_policy_guards_the_head() -> None:
    policies = [o for _, o in OBJECTS if o["kind"] == "NetworkPolicy"]
    head = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].get("ray.io/node-type") == "head"]
    assert head and "Ingress" in head[0]["spec"]["policyTypes"]
    for rule in head[0]["spec"]["ingress"]:
        assert rule.get("from"), "an ingress rule without 'from' admits every source"
        assert all("ipBlock" not in peer for peer in rule["from"])


# --- real and complete: resources, images, security, volumes, identity ---------------------------


@pytest.mark.parametrize("obj", _ray_objects(), ids=lambda o: o["kind"])
def test_pods_are_complete_and_hardened(obj) -> None:
    groups = set()
    for where, template in pod_templates(obj):
        spec = template["spec"]
        groups.add(where)
        assert spec["serviceAccountName"] == "accord-ray", where
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
            res = c["resources"]
            assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"], where
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert not sc.get("privileged", False)
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, (where, m["name"])
            if where != "submitter":
                mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
                assert mounts["/models"]["readOnly"] is True
                assert (
                    volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["claimName"]
                    == "accord-models"
                )
                assert {"name": "ACCORD_MODELS", "value": "/models"} in c["env"]
                if sc.get("readOnlyRootFilesystem"):
                    assert "/tmp" in mounts, "Ray needs a writable /tmp"
    assert {"head", "worker:cpu", "worker:gpu"} <= groups


@pytest.mark.parametrize("obj", _ray_objects(), ids=lambda o: o["kind"])
def test_cpu_and_gpu_worker_groups(obj) -> None:
    cluster = obj["spec"].get("rayClusterSpec", obj["spec"])
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    gpu = groups["gpu"]["template"]["spec"]
    (c,) = gpu["containers"]
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert "cuda" in c["image"]
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    (cpu,) = groups["cpu"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    for g in groups.values():
        assert g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"]
    assert cluster["rayVersion"] == _locked("ray")
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0", "no tasks on the head"


def _locked(name: str) -> str:
    from ._infra import ROOT

    for line in (ROOT / "requirements/constraints.txt").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{name} not in the lock")


def test_rayjob_submits_ingest_with_the_shared_runtime_env() -> None:
    (job,) = [o for o in _ray_objects() if o["kind"] == "RayJob"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("accord ingest ")
    assert spec["shutdownAfterJobFinishes"] is True
    shared = yaml.safe_load((INFRA / "ray/runtime_env.yaml").read_text())
    assert yaml.safe_load(spec["runtimeEnvYAML"]) == shared
    labels = spec["submitterPodTemplate"]["metadata"]["labels"]
    assert labels.get("accord.dev/ray-client") == "true", (
        "the NetworkPolicy admits the submitter by this label"
    )


def test_kustomization_lists_real_files() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    listed = set(kust["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed <= on_disk
    assert on_disk - listed == {"rayjob-ingest.yaml"}
