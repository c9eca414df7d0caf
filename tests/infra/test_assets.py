"""The deployment assets under infra/: they parse, validate against their schemas offline, and
every saverzoo command they run exists with the options they give it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kubernetes_validate
import pytest
import typer
import yaml

from orchestrator.cli import app

INFRA = Path(__file__).resolve().parents[2] / "infra"
YAML_FILES = sorted(INFRA.rglob("*.yaml"))
K8S_VERSION = kubernetes_validate.latest_version()


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_documents() -> list[tuple[str, dict]]:
    return [
        (f"{path.name}:{doc['kind']}", doc)
        for path in sorted((INFRA / "k8s").glob("*.yaml"))
        for doc in documents(path)
        if doc.get("kind") != "Kustomization"
    ]


def test_every_yaml_under_infra_parses():
    assert len(YAML_FILES) >= 8
    for path in YAML_FILES:
        assert documents(path), path


@pytest.mark.parametrize(
    "doc",
    [d for _, d in k8s_documents() if "ray.io" not in d["apiVersion"]],
    ids=[n for n, d in k8s_documents() if "ray.io" not in d["apiVersion"]],
)
def test_kubernetes_manifests_validate_strictly(doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def kuberay_pod_templates(doc: dict) -> list[dict]:
    """The pod templates of a RayCluster or RayJob, checking KubeRay's required fields."""
    spec = doc["spec"]
    if doc["kind"] == "RayJob":
        assert spec["entrypoint"].split()[0] == "saverzoo"
        assert ("clusterSelector" in spec) != ("rayClusterSpec" in spec)
        return [spec["submitterPodTemplate"]]
    assert doc["kind"] == "RayCluster" and spec["rayVersion"]
    head = spec["headGroupSpec"]
    templates = [head["template"]]
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        templates.append(group["template"])
    return templates


@pytest.mark.parametrize(
    "doc",
    [d for _, d in k8s_documents() if "ray.io" in d["apiVersion"]],
    ids=[n for n, d in k8s_documents() if "ray.io" in d["apiVersion"]],
)
def test_kuberay_resources_have_valid_pod_templates(doc):
    assert doc["apiVersion"] == "ray.io/v1" and doc["metadata"]["namespace"] == "saverzoo"
    for template in kuberay_pod_templates(doc):
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "t"},
            "template": template,
        }
        kubernetes_validate.validate(pod_template, K8S_VERSION, strict=True)


def test_the_kustomization_lists_every_long_lived_manifest():
    [kustomization] = documents(INFRA / "k8s" / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in (INFRA / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"rayjob-sweep.yaml"}  # a RayJob is applied once per sweep


def test_every_secret_is_referenced_never_inlined():
    for name, doc in k8s_documents():
        assert doc["kind"] != "Secret", name
        text = json.dumps(doc)
        for variable in ("SAVERZOO_DATABASE_URL", "AWS_SECRET_ACCESS_KEY", "API_WRITE_TOKENS"):
            assert variable not in text, (name, variable)  # they come from secretRef
    assert "secretRef" in (INFRA / "k8s" / "serve.yaml").read_text()


def test_the_ray_cluster_config_validates_against_rays_schema():
    from cluster.ray_cluster import ray_api

    ray_api()  # Ray imported as saverzoo imports it: its authentication mode is read once
    from ray.autoscaler._private.util import prepare_config, validate_config

    [config] = documents(INFRA / "ray" / "cluster.yaml")
    # What `ray up` does first: fill in the provider's defaults, then Ray's own schema
    # (ray-schema.json) and its consistency checks.
    validate_config(prepare_config(config))
    assert config["available_node_types"]["gpu_worker"]["resources"]["GPU"] >= 1
    assert any("saverzoo[worker]" in command for command in config["setup_commands"])


# ----- the commands the assets run ---------------------------------------------------------------
def saverzoo_commands() -> list[list[str]]:
    commands = []
    for _, doc in k8s_documents():
        if doc["kind"] == "RayJob":
            commands.append(shlex.split(doc["spec"]["entrypoint"]))
        for container in _containers(doc):
            if container.get("args", [None])[0] == "saverzoo":
                commands.append(container["args"])
    return commands


def _containers(doc: dict) -> list[dict]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            found.extend(node.get("containers", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


def parse(args: list[str]) -> tuple[str, dict]:
    """Parse a saverzoo command line as the CLI would, without running it."""
    command = typer.main.get_command(app)
    context = command.make_context("saverzoo", list(args))
    rest = [*context._protected_args, *context.args]
    while hasattr(command, "resolve_command") and rest:
        name, command, rest = command.resolve_command(context, rest)
        context = command.make_context(name, rest, parent=context)
        rest = [*getattr(context, "_protected_args", []), *context.args]
    return context.command_path, context.params


def test_every_command_the_assets_run_exists_with_its_options():
    commands = saverzoo_commands()
    paths = {parse(command[1:])[0] for command in commands}
    assert paths == {"saverzoo sweep submit", "saverzoo watch", "saverzoo serve"}
    _, serve = parse(["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"])
    assert serve["host"] == "0.0.0.0"
    with pytest.raises(Exception, match="No such option"):
        parse(["watch", "--no-such-option"])  # the parser does reject what does not exist


def test_the_dockerfile_installs_the_project_as_a_non_root_user():
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    root = INFRA.parent
    for line in dockerfile.splitlines():
        if line.startswith("COPY"):
            source = line.split()[-2]
            assert (root / source).exists(), line
    assert "USER saverzoo" in dockerfile and 'pip install ".[worker]"' in dockerfile
    assert dockerfile.index("USER saverzoo") < dockerfile.index('pip install ".[worker]"')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.postgres
def test_the_local_postgres_script_serves_a_database():
    from sqlalchemy import create_engine, text

    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="saverzoo-pg-"))  # reachable by the postgres user
    server = subprocess.Popen(
        ["bash", str(INFRA / "local" / "postgres.sh"), str(folder), str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    try:
        for _ in range(150):
            if server.poll() == 3:
                pytest.skip("initdb is not installed")
            assert server.poll() is None, server.stderr.read()
            try:
                with create_engine(url).connect() as connection:
                    assert connection.execute(text("select 1")).scalar() == 1
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        else:
            pytest.fail("the script's PostgreSQL did not answer")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_local_seaweedfs_script_drives_saverzoo_objectstore(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SAVERZOO_OBJECTSTORE_DIR": str(tmp_path / "store"),
    }
    result = subprocess.run(
        ["bash", str(INFRA / "local" / "seaweedfs.sh"), "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr  # `objectstore status`: not running
    assert "object store not running" in result.stdout
