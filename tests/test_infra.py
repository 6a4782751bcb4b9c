"""infra/: every YAML parses and carries the fields a cluster needs; the Dockerfile pins what we test with."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
ray = pytest.importorskip("ray")

INFRA = Path(__file__).resolve().parents[1] / "infra"
MAJOR_MINOR = ".".join(ray.__version__.split(".")[:2])


def load(name: str) -> dict:
    return yaml.safe_load((INFRA / name).read_text())


def test_every_yaml_parses():
    files = sorted(INFRA.rglob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def check_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"].startswith(MAJOR_MINOR + ".")
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports >= {6379, 8265, 10001}
    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")]
    assert gpu_groups, "no worker group with nvidia.com/gpu limits"
    for group in gpu_groups:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        container = group["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
        assert any(m["mountPath"] == "/results" for m in container["volumeMounts"])


def test_raycluster_manifest():
    doc = load("k8s/raycluster.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")
    check_cluster_spec(doc["spec"])


def test_rayjob_runs_zooscan_scan_on_its_own_cluster():
    doc = load("k8s/rayjob.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    spec = doc["spec"]
    assert spec["entrypoint"].split()[:2] == ["zooscan", "scan"]
    assert "--address auto" in spec["entrypoint"] and "--results /results" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] >= 1
    check_cluster_spec(spec["rayClusterSpec"])


def test_cluster_launcher_has_a_gpu_worker_type_and_an_idle_head():
    doc = load("ray/aws.yaml")
    assert doc["provider"]["type"] in ("aws", "gcp") and doc["max_workers"] >= 1
    types = doc["available_node_types"]
    assert types[doc["head_node_type"]]["resources"]["CPU"] == 0
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types and all(t["max_workers"] >= 1 for t in gpu_types)
    assert any("--shm-size" in option for option in doc["docker"]["run_options"])


def test_dockerfile_base_and_pins_match_what_is_tested():
    text = (INFRA / "docker" / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+)\.\d+-py3\d+-gpu", base)
    assert match and match.group(1) == MAJOR_MINOR
    runs = [line for line in text.replace("\\\n", " ").splitlines() if line.startswith("RUN pip install")]
    pins = dict(re.findall(r"(?<![\w-])([A-Za-z_.\[\]-]+)==(\d[\w.]*)", " ".join(runs)))
    for name in ("torch", "torchvision"):  # the pair this repository is tested with
        assert pins[name] == metadata.version(name).split("+")[0], name
    assert pins["ray[default]"] == ray.__version__
    assert any("-e /opt/zooscan" in line for line in runs)


def test_readme_has_the_job_submit_command():
    text = (INFRA / "README.md").read_text()
    assert "ray job submit --address" in text and "-- zooscan scan" in text
    assert "--submission-id" in text
