"""The cluster-launcher YAML validates against the schema Ray ships; runtime envs parse as Ray parses them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml

from ._infra import INFRA, ROOT

LAUNCHER = INFRA / "ray/cluster-aws.yaml"
RAY_SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


def _launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def test_cluster_launcher_validates_against_rays_schema() -> None:
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = _launcher()
    jsonschema.validate(config, json.loads(RAY_SCHEMA.read_text()))
    validate_config(fillout_defaults(config))  # what `ray up` runs before touching the cloud


def test_cluster_launcher_schema_check_can_fail() -> None:
    broken = copy.deepcopy(_launcher())
    broken["available_node_types"]["gpu_worker"]["max_workerz"] = 4
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(RAY_SCHEMA.read_text()))


def test_cluster_launcher_node_types() -> None:
    config = _launcher()
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert types["cpu_worker"]["resources"].get("GPU", 0) == 0 and types["cpu_worker"]["resources"]["CPU"] > 0
    assert types["gpu_worker"]["resources"]["GPU"] >= 1
    assert "cuda" in types["gpu_worker"]["docker"]["worker_image"]
    assert sum(t.get("max_workers", 0) for t in types.values()) <= config["max_workers"]


def test_cluster_launcher_keeps_the_dashboard_private() -> None:
    config = _launcher()
    head_cmd = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmd
    assert "-e RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert any(p.endswith(".ray/auth_token") for p in config["file_mounts"])
    for perm in config["provider"]["security_group"]["IpPermissions"]:
        assert perm["FromPort"] == perm["ToPort"] == 22, "only ssh is opened"
        assert all(r["CidrIp"] != "0.0.0.0/0" for r in perm["IpRanges"])


@pytest.mark.parametrize("name", ["runtime_env.yaml", "runtime_env.dev.yaml"])
def test_runtime_env_parses_as_ray_does(name, monkeypatch) -> None:
    from ray.runtime_env import RuntimeEnv

    monkeypatch.chdir(ROOT)  # working_dir "." is the repository root, as documented
    raw = yaml.safe_load((INFRA / "ray" / name).read_text())
    env = RuntimeEnv(**raw)
    assert env["env_vars"]["ACCORD_MODELS"] == "/models"
    assert env["env_vars"]["RAY_USAGE_STATS_ENABLED"] == "0"
    assert all(isinstance(v, str) for v in env["env_vars"].values())
    if "pip" in raw:
        packages = env["pip"]["packages"]
        assert any("requirements/constraints.txt" in p and p.startswith("-c ") for p in packages)
        assert (ROOT / "requirements/constraints.txt").exists()


def test_runtime_env_rejects_bad_values() -> None:
    from ray.runtime_env import RuntimeEnv

    with pytest.raises(TypeError):
        RuntimeEnv(env_vars={"OMP_NUM_THREADS": 1})
