"""deploy/: the Helm values and the Dockerfile, checked as far as this machine can (no Kubernetes, no Docker).

The values file overrides keys of Dagster's official chart (dagster/dagster 1.13.x).
Each key used here is checked against the chart's values.schema.json, whose
relevant definitions are transcribed in ``ALLOWED`` (the schema itself refers
to kubernetesjsonschema.dev, which a test cannot fetch). `helm lint` and
`helm template` with the real chart are in deploy/README.md, for a machine with helm.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from iot_platform.cli.dagster_home import instance_yaml

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "deploy" / "helm" / "values.yaml"

# From helm/dagster/values.schema.json (definitions DagsterHelmValues, RunLauncher, K8sRunLauncherConfig,
# PostgreSQL, Daemon, RunCoordinator, QueuedRunCoordinatorConfig, TagConcurrencyLimit) and
# charts/dagster-user-deployments/values.schema.json (UserDeployment, Image).
ALLOWED: dict[str, set[str]] = {
    "": {"dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
         "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets", "computeLogManager",
         "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount",
         "global", "retention", "additionalInstanceConfig"},
    "dagster-user-deployments": {"enabled", "enableSubchart", "deployments", "imagePullSecrets", "serviceAccount", "global"},
    "dagster-user-deployments.deployments[]": {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs",
        "includeConfigInLaunchedRuns", "port", "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector",
        "affinity", "tolerations", "podSecurityContext", "securityContext", "resources", "livenessProbe",
        "readinessProbe", "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName", "initContainers",
        "sidecarContainers"},
    "dagster-user-deployments.deployments[].image": {"repository", "tag", "pullPolicy"},
    "dagster-user-deployments.deployments[].includeConfigInLaunchedRuns": {"enabled"},
    "runLauncher": {"type", "config"},
    "runLauncher.config": {"celeryK8sRunLauncher", "k8sRunLauncher", "customRunLauncher"},
    "runLauncher.config.k8sRunLauncher": {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig",
        "kubeconfigFile", "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
        "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig"},
    "postgresql": {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
                   "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service"},
    "postgresql.service": {"port"},
    "dagsterDaemon": {"enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps", "envSecrets",
        "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
        "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe", "annotations",
        "runMonitoring", "runRetries", "sensors", "schedules", "schedulerName", "volumeMounts", "volumes",
        "initContainerResources"},
    "dagsterDaemon.runCoordinator": {"enabled", "type", "config"},
    "dagsterDaemon.runCoordinator.config": {"queuedRunCoordinator", "customRunCoordinator"},
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator": {"maxConcurrentRuns", "tagConcurrencyLimits",
        "dequeueIntervalSeconds", "dequeueNumWorkers", "dequeueUseThreads", "blockOpConcurrencyLimitedRuns"},
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits[]": {"key", "value", "limit"},
    "telemetry": {"enabled"},
}  # fmt: skip
ENUMS = {"runLauncher.type": {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"},
         "dagsterDaemon.runCoordinator.type": {"QueuedRunCoordinator", "CustomRunCoordinator"},
         "dagster-user-deployments.deployments[].image.pullPolicy": {"Always", "IfNotPresent", "Never"}}  # fmt: skip


def _walk(node, path: str, out: list[str]) -> None:
    """Every key of the values under a path the transcribed schema describes, as an error if unknown."""
    if isinstance(node, list):
        if path + "[]" in ALLOWED:
            for item in node:
                _walk(item, path + "[]", out)
        return
    if isinstance(node, dict) and path in ALLOWED:
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            if key not in ALLOWED[path]:
                out.append(f"{child} is not in the chart's schema")
            _walk(value, child, out)
    elif path in ENUMS and node not in ENUMS[path]:
        out.append(f"{path}={node!r}; expected one of {sorted(ENUMS[path])}")


def test_every_value_is_a_key_of_the_chart_schema():
    values = yaml.safe_load(VALUES.read_text())
    errors: list[str] = []
    _walk(values, "", errors)
    assert errors == []
    # the checks reach every section this file sets
    assert {k for k, v in values.items() if isinstance(v, dict)} <= set(ALLOWED) - {""}
    assert values["generatePostgresqlPasswordSecret"] is False  # the secret is created beforehand


def test_a_misspelt_key_is_caught():
    errors: list[str] = []
    _walk({"runLauncher": {"type": "K8sRunLaunchr", "config": {"k8sRunLauncher": {"envSecret": []}}}}, "", errors)
    assert errors == [
        "runLauncher.type='K8sRunLaunchr'; expected one of ['CeleryK8sRunLauncher', 'CustomRunLauncher', 'K8sRunLauncher']",
        "runLauncher.config.k8sRunLauncher.envSecret is not in the chart's schema",
    ]


def test_the_cluster_has_the_same_queue_lanes_and_settings_as_a_local_home():
    values = yaml.safe_load(VALUES.read_text())
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    local = yaml.safe_load(instance_yaml(postgres=True, backfills=8))["concurrency"]["runs"]
    assert queue["tagConcurrencyLimits"] == local["tag_concurrency_limits"]
    assert queue["maxConcurrentRuns"] == local["max_concurrent_runs"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "iot_platform.definitions"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["IOT_BACKFILL_EXECUTOR"] == "k8s"
    assert {"IOT_LAKE_URL", "AWS_ENDPOINT_URL", "AWS_REGION"} <= set(env)
    # secrets by reference only: no key or password in the file
    assert "AWS_SECRET_ACCESS_KEY" not in env and values["postgresql"]["postgresqlPassword"] == ""


def test_the_dockerfile_pins_the_dagster_family_and_copies_what_exists():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "dagster==1.13.27" in deps["dependencies"]
    assert deps["optional-dependencies"]["postgres"] == ["dagster-postgres==0.29.27"]
    assert '"dagster-k8s==0.29.27"' in text and '-e ".[postgres]"' in text
    # the SQL models are looked up beside the package: the image must keep the checkout layout
    from iot_platform.io.warehouse import default_project_dir

    assert default_project_dir() == ROOT / "dbt_like_sql" and "COPY dbt_like_sql ./dbt_like_sql" in text
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src


def test_an_unknown_backfill_executor_is_named():
    env = dict(os.environ, IOT_BACKFILL_EXECUTOR="celery")
    proc = subprocess.run([sys.executable, "-c", "import iot_platform.definitions"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "ValueError: IOT_BACKFILL_EXECUTOR='celery' is invalid; expected multiprocess or k8s"
