"""infra/: the KubeRay manifests against the KubeRay CRDs (every field path, unknown field = failure), the Ray
cluster launcher YAML against ray's own ray-schema.json, storage and cache limits, submit.sh resuming a scan,
and the Dockerfile pinning what we test with."""

from __future__ import annotations

import copy
import functools
import itertools
import json
import os
import re
import shlex
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
ray = pytest.importorskip("ray")

INFRA = Path(__file__).resolve().parents[1] / "infra"
CRDS = INFRA / "k8s" / "crd"
MAJOR_MINOR = ".".join(ray.__version__.split(".")[:2])
QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "": 1}


def load(name: str) -> dict:
    return yaml.safe_load((INFRA / name).read_text())


def k8s_documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in sorted((INFRA / "k8s").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@functools.cache
def crd_schema(kind: str, version: str = "v1") -> dict:
    """The openAPIV3Schema of a KubeRay kind, from the CRD files committed under infra/k8s/crd/."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for path in CRDS.glob("ray.io_*.yaml"):
        crd = yaml.load(path.read_text(), Loader=loader)
        if crd["spec"]["names"]["kind"] == kind:
            (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
            return found["schema"]["openAPIV3Schema"]
    raise KeyError(kind)


def schema_errors(value: Any, schema: dict, path: str = "") -> list[str]:
    """Field paths of ``value`` that the structural OpenAPI v3 schema of a CRD does not allow.

    Objects with ``properties`` accept only those keys (Kubernetes would prune the others silently: a typo);
    ``additionalProperties`` types the values of maps; an object schema with neither (``metadata``) or with
    ``x-kubernetes-preserve-unknown-fields`` takes anything. Types, enums, patterns and ``required`` are checked.
    """
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        if ok and isinstance(value, str) and "pattern" in schema:
            ok = re.search(schema["pattern"], value) is not None
        return [] if ok else [f"{path}: {value!r} is not an int-or-string quantity"]
    kind = schema.get("type")
    if kind == "object":
        return _object_errors(value, schema, path)
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in schema_errors(item, schema.get("items", {}), f"{path}[{i}]")]
    python = {"string": str, "integer": int, "boolean": bool, "number": (int, float)}.get(kind or "")
    if python is not None and (not isinstance(value, python) or (kind != "boolean" and isinstance(value, bool))):
        return [f"{path}: expected {kind}, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    if kind == "string" and "pattern" in schema and not re.search(schema["pattern"], value):
        return [f"{path}: {value!r} does not match {schema['pattern']}"]
    return []


def _object_errors(value: Any, schema: dict, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object, got {type(value).__name__}"]
    errors = [f"{path}.{name}: required field missing" for name in schema.get("required", ()) if name not in value]
    properties, extra = schema.get("properties"), schema.get("additionalProperties")
    for key, item in value.items():
        if properties is not None and key in properties:
            errors += schema_errors(item, properties[key], f"{path}.{key}")
        elif isinstance(extra, dict):
            errors += schema_errors(item, extra, f"{path}.{key}")
        elif properties is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            errors.append(f"{path}.{key}: unknown field")
    return errors


def quantity(text: str | int) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text)).groups()  # type: ignore[union-attr]
    return float(number) * QUANTITY[unit]


def test_crds_are_committed_with_their_licence() -> None:
    assert "Apache License" in (CRDS / "LICENSE").read_text()
    assert "github.com/ray-project/kuberay" in (CRDS / "README.md").read_text()
    for kind in ("RayCluster", "RayJob"):
        assert crd_schema(kind)["properties"]["spec"]["properties"]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests_match_the_crd_schema(name: str) -> None:
    (doc,) = [d for n, d in k8s_documents() if n == name]
    assert doc["apiVersion"] == "ray.io/v1"
    assert schema_errors(doc, crd_schema(doc["kind"])) == []


def test_the_schema_check_catches_a_misspelt_or_mistyped_field() -> None:
    (doc,) = [d for n, d in k8s_documents() if n == "raycluster.yaml"]
    bad = copy.deepcopy(doc)
    bad["spec"]["headGroupSpec"]["rayStartParam"] = bad["spec"]["headGroupSpec"].pop("rayStartParams")
    bad["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "8"
    bad["spec"]["workerGroupSpecs"][0]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimt"] = "1Gi"
    errors = schema_errors(bad, crd_schema("RayCluster"))
    assert errors == [".spec.headGroupSpec.rayStartParam: unknown field",
                      ".spec.workerGroupSpecs[0].maxReplicas: expected integer, got '8'",
                      ".spec.workerGroupSpecs[0].template.spec.volumes[0].emptyDir.sizeLimt: unknown field"]


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
        pod = group["template"]["spec"]
        container = pod["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        cache = volumes[mounts["/cache/huggingface"]]["emptyDir"]
        assert quantity(cache["sizeLimit"]) >= 50 * 2**30, "the hub cache needs a size limit"
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert {"name": "HF_HOME", "value": "/cache/huggingface"} in container["env"]


def test_raycluster_mounts_the_defined_results_volume_on_the_head() -> None:
    docs = k8s_documents()
    (cluster,) = [d for _, d in docs if d["kind"] == "RayCluster"]
    check_cluster_spec(cluster["spec"])
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in head["volumes"] if "persistentVolumeClaim" in v}
    (pvc,) = [d for _, d in docs if d["kind"] == "PersistentVolumeClaim"]
    (storage_class,) = [d for _, d in docs if d["kind"] == "StorageClass"]
    assert claims == {pvc["metadata"]["name"]} == {"zooscan-results"}
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == storage_class["metadata"]["name"]
    assert storage_class["reclaimPolicy"] == "Retain"


def test_rayjob_scans_into_an_object_store_with_a_bounded_cache() -> None:
    doc = load("k8s/rayjob.yaml")
    spec = doc["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["zooscan", "scan"]
    options = dict(itertools.pairwise(argv[2:]))  # each token -> the next
    assert options["--results"].startswith("s3://") and options["--address"] == "auto"
    assert "--scan-id" in options, "a retry (backoffLimit) must resume the same scan id"
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] >= 1
    check_cluster_spec(spec["rayClusterSpec"])
    (group,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    (cache,) = [v for v in group["template"]["spec"]["volumes"] if v["name"] == "hf-cache"]
    assert float(options["--cache-max-gb"]) * 1e9 < quantity(cache["emptyDir"]["sizeLimit"])
    assert options["--cache-dir"] == "/cache/huggingface"


def test_every_entrypoint_option_exists_on_zooscan_scan() -> None:
    from scanner.cli import build_parser

    argv = shlex.split(load("k8s/rayjob.yaml")["spec"]["entrypoint"])
    build_parser().parse_args(argv[1:])  # SystemExit on an unknown option


def test_cluster_launcher_matches_rays_schema_and_mounts_efs_on_the_host() -> None:
    import jsonschema

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    doc = load("ray/aws.yaml")
    jsonschema.validate(doc, schema)  # unknown top-level or docker keys fail (additionalProperties: false)
    bad = {**doc, "initialisation_commands": []}
    with pytest.raises(jsonschema.ValidationError, match="initialisation_commands"):
        jsonschema.validate(bad, schema)
    host = " ".join(doc["initialization_commands"])
    assert "mount -t nfs4" in host and "/mnt/efs" in host
    assert not any("mount" in c for c in doc.get("setup_commands") or []), "setup_commands run inside the container"
    assert "-v /mnt/efs/results:/results" in doc["docker"]["run_options"]
    types = doc["available_node_types"]
    assert types[doc["head_node_type"]]["resources"]["CPU"] == 0
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types and all(t["max_workers"] >= 1 for t in gpu_types)
    assert any("--shm-size" in option for option in doc["docker"]["run_options"])


def fake_ray(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `ray` on PATH that records its argv (one line per call, NUL-separated fields)."""
    log = tmp_path / "ray.log"
    binary = tmp_path / "bin" / "ray"
    binary.parent.mkdir()
    binary.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" >> {log}\necho >> {log}\n')
    binary.chmod(0o755)
    env = {**os.environ, "PATH": f"{binary.parent}:{os.environ['PATH']}", "ZOOSCAN_SUBMISSIONS": str(tmp_path / "s")}
    return env, log


def submit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INFRA / "submit.sh"), "http://127.0.0.1:8265", *args], env=env,
                          capture_output=True, text=True, check=False)


def test_submit_resumes_the_same_scan_with_the_same_options(tmp_path: Path) -> None:
    env, log = fake_ray(tmp_path)
    first = submit(env, "s-imagenet-1", "timm_imagenet", "--results", "s3://b/z", "--device", "cuda")
    assert first.returncode == 0, first.stderr
    resumed = submit(env, "s-imagenet-1", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    calls = [line.split("\0")[:-1] for line in log.read_text().splitlines() if line]
    assert len(calls) == 2
    entrypoints = [call[call.index("--") + 1:] for call in calls]
    assert entrypoints[0] == entrypoints[1] == ["zooscan", "scan", "timm_imagenet", "--results", "s3://b/z",
                                                "--device", "cuda", "--scan-id", "s-imagenet-1", "--address", "auto"]
    ids = [call[call.index("--submission-id") + 1] for call in calls]
    assert all(i.startswith("zooscan-s-imagenet-1-") for i in ids)
    other = submit(env, "s-imagenet-1", "timm_imagenet", "--results", "s3://b/z", "--device", "cpu")
    assert other.returncode == 1 and "submitted with other options" in other.stderr and "--resume" in other.stderr
    assert submit(env, "s-never", "--resume").returncode == 1
    no_results = submit({k: v for k, v in env.items() if k != "ZOOSCAN_RESULTS"}, "s-2", "timm_imagenet")
    assert no_results.returncode == 2 and "--results" in no_results.stderr


def test_dockerfile_base_and_pins_match_what_is_tested() -> None:
    text = (INFRA / "docker" / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+)\.\d+-py3\d+-gpu", base)
    assert match and match.group(1) == MAJOR_MINOR
    runs = [line for line in text.replace("\\\n", " ").splitlines() if line.startswith("RUN pip install")]
    pins = dict(re.findall(r"(?<![\w-])([A-Za-z_.\[\]-]+)==(\d[\w.]*)", " ".join(runs)))
    for name in ("torch", "torchvision"):  # the pair this repository is tested with
        assert pins[name] == metadata.version(name).split("+")[0], name
    assert pins["ray[default]"] == ray.__version__
    assert pins["huggingface_hub"] == metadata.version("huggingface_hub")
    assert any("-e /opt/zooscan" in line for line in runs)


def test_readme_documents_submit_resume_and_the_hub_cache() -> None:
    text = (INFRA / "README.md").read_text()
    assert "infra/submit.sh" in text and "--resume" in text and "s3://" in text
    assert "--cache-max-gb" in text and "HF_HUB_OFFLINE" in text
