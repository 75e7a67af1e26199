"""Helpers shared by the infra tests: where infra/ is, how files are classified and loaded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
SCHEMAS = INFRA / "schemas"
K8S_VERSION = "1.35"
CORE_DEFS_ID = "https://kubernetes.io/api/_definitions.json"


def infra_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_objects() -> Iterator[tuple[Path, dict]]:
    """Every Kubernetes object under infra/k8s (kustomization.yaml is kustomize config, not an object)."""
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml_docs(path):
            yield path, doc


@cache
def kuberay_validator(kind: str):
    """A Draft 2020-12 validator for ``kind`` from infra/schemas/kuberay-v1.yaml (accord's own
    schema of the KubeRay fields it uses), pod templates resolved to the strict core k8s schema."""
    import importlib.resources

    import jsonschema
    from referencing import Registry, Resource

    pkg = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    core_dir = f"v{K8S_VERSION}.0-local-strict"
    core = json.loads((pkg / core_dir / "_definitions.json").read_text())
    schema = yaml.safe_load((SCHEMAS / "kuberay-v1.yaml").read_text())
    registry = Registry().with_resources(
        [(CORE_DEFS_ID, Resource.from_contents(core)), (schema["$id"], Resource.from_contents(schema))]
    )
    root = {"$schema": schema["$schema"], "$ref": f"{schema['$id']}#/$defs/{kind}"}
    return jsonschema.Draft202012Validator(root, registry=registry)


def pod_templates(obj: dict) -> Iterator[tuple[str, dict]]:
    """(where, PodTemplateSpec) for every pod a RayCluster / RayJob makes."""
    spec = obj["spec"]
    cluster = spec.get("rayClusterSpec", spec) if obj["kind"] == "RayJob" else spec
    yield "head", cluster["headGroupSpec"]["template"]
    for group in cluster.get("workerGroupSpecs", []):
        yield f"worker:{group['groupName']}", group["template"]
    if obj["kind"] == "RayJob" and "submitterPodTemplate" in spec:
        yield "submitter", spec["submitterPodTemplate"]
