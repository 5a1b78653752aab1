"""Issue 10: MLflow 3.18 without a start-up module, artifact transfer modes, server tuning.

proxied renders none of MLflow's multipart opt-ins; direct renders them only where the URL the server
signs works for a client outside the cluster; workers, job runner, scratch and timeouts follow config.
"""

import pytest

from config import ConfigError
from tests.stacks import EXTERNAL_MINIO, EXTERNAL_S3, container, env_value, load, pod_of, problem_line
from tools.mock_engine import evaluate_stack

MULTIPART_ENV = {"MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"}
PUBLISHED = {"minioIngress": True, "ingressClusterIssuer": "letsencrypt", "ingressClassName": "nginx"}


def server(ev) -> dict:
    return container(ev, "Deployment", "mlflow-deployment", "mlflow")


def env_names(ev) -> set[str]:
    return {e["name"] for e in server(ev)["env"]}


def ingresses(ev) -> dict[str, dict]:
    return {o["spec"]["rules"][0]["host"]: o for o in ev.k8s("Ingress")}


def test_proxied_default_renders_no_multipart_opt_in_and_no_published_minio():
    ev = evaluate_stack("dev")
    assert not env_names(ev) & MULTIPART_ENV
    assert env_value(ev, server(ev), "MLFLOW_S3_ENDPOINT_URL") == "https://minio.mlflow-dev.svc:9000"
    assert list(ingresses(ev)) == ["mlflow-mlflow-dev.localtest.me"]
    assert ev.outputs["clientEnvironment"] == {"MLFLOW_HTTP_REQUEST_TIMEOUT": "600"}


@pytest.mark.parametrize(
    "extra, fix",
    [
        ({}, "minioIngress: true"),
        ({"minioIngress": True}, "ingressTlsSecretName or ingressClusterIssuer"),
    ],
)
def test_direct_with_an_unreachable_in_cluster_minio_is_refused(extra, fix):
    with pytest.raises(ConfigError) as error:
        load("dev", artifactTransferMode="direct", **extra)
    line = problem_line(str(error.value), "artifactTransferMode")
    assert '"direct"' in line and "neither reachable nor trusted outside the cluster" in line and fix in line


@pytest.mark.parametrize(
    "config, problem",
    [
        ({"minioIngress": True}, "plain HTTP"),
        ({"minioIngress": True, **EXTERNAL_S3}, "no in-cluster MinIO to publish"),
    ],
)
def test_minio_ingress_needs_tls_and_an_in_cluster_minio(config, problem):
    with pytest.raises(ConfigError) as error:
        load("dev", **config)
    assert problem in problem_line(str(error.value), "minioIngress")


def test_direct_through_published_minio_signs_for_the_public_host():
    ev = evaluate_stack(
        "dev",
        {
            "artifactTransferMode": "direct",
            "artifactMultipartThreshold": "64Mi",
            "artifactMultipartChunkSize": "16Mi",
            **PUBLISHED,
        },
    )
    c = server(ev)
    assert {name: env_value(ev, c, name) for name in MULTIPART_ENV} == dict.fromkeys(MULTIPART_ENV, "true")
    # One endpoint for the server's own access and for signing: the published one, verified with the
    # image's public CAs (the ingress certificate), not MinIO's private CA.
    assert env_value(ev, c, "MLFLOW_S3_ENDPOINT_URL") == "https://minio-mlflow-dev.localtest.me"
    assert "AWS_CA_BUNDLE" not in env_names(ev)
    minio = ingresses(ev)["minio-mlflow-dev.localtest.me"]
    assert minio["spec"]["tls"] == [{"hosts": ["minio-mlflow-dev.localtest.me"], "secretName": "minio-ingress-tls"}]
    backend = minio["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "minio", "port": {"number": 9000}}
    notes = minio["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    assert notes["nginx.ingress.kubernetes.io/proxy-ssl-verify"] == "on"
    assert notes["nginx.ingress.kubernetes.io/proxy-ssl-name"] == "minio.mlflow-dev.svc"
    egress = next(o for o in ev.k8s("NetworkPolicy") if o["metadata"]["name"].startswith("mlflow-egress"))
    # The ingress controller's pods: 443 (ingress-nginx) or 8443 behind the Service's 443 (k3s Traefik).
    assert {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}]} in egress["spec"]["egress"]
    minio_policy = next(o for o in ev.k8s("NetworkPolicy") if o["metadata"]["name"].startswith("minio-network"))
    assert {"ports": [{"port": 9000, "protocol": "TCP"}]} in minio_policy["spec"]["ingress"]
    assert ev.outputs["clientEnvironment"] == {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "600",
        "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(64 * 2**20),
        "MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE": str(64 * 2**20),
        "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE": str(16 * 2**20),
        # Downloads: the range size MLflow's client is fastest with (make bench), whatever the part size.
        "MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE": str(8 * 2**20),
    }


@pytest.mark.parametrize("mode", [EXTERNAL_S3, EXTERNAL_MINIO], ids=["external", "externalMinio"])
def test_direct_with_an_external_endpoint_signs_for_it(mode):
    ev = evaluate_stack("dev", {"artifactTransferMode": "direct", **mode})
    assert env_value(ev, server(ev), "MLFLOW_S3_ENDPOINT_URL") == mode["s3Endpoint"]
    assert env_names(ev) >= MULTIPART_ENV


@pytest.mark.parametrize(
    "value, problem", [("1Mi", "not a size of at least 5Mi"), ("big", "not a size of at least 5Mi")]
)
def test_multipart_threshold_is_validated(value, problem):
    with pytest.raises(ConfigError) as error:
        load("dev", artifactMultipartThreshold=value)
    assert problem in problem_line(str(error.value), "artifactMultipartThreshold")


@pytest.mark.parametrize("version", ["3.17.2", "3.16.0", "2.22.5"])
def test_mlflow_before_3_18_is_refused(version):
    with pytest.raises(ConfigError) as error:
        load("dev", mlflowVersion=version)
    line = problem_line(str(error.value), "mlflowVersion")
    assert "advertises presigned multipart transfers" in line and "3.18.0 or newer" in line


@pytest.mark.parametrize(
    "cpu_limit, memory_limit, workers", [("1", "1Gi", 1), ("2", "1Gi", 2), ("500m", "1Gi", 1), ("4", "2Gi", 4)]
)
def test_workers_default_to_the_cpu_limit(cpu_limit, memory_limit, workers):
    s = load("dev", mlflowCpuLimit=cpu_limit, mlflowMemoryLimit=memory_limit)
    assert s.mlflow_worker_count == workers


def test_workers_that_do_not_fit_the_memory_limit_are_refused():
    with pytest.raises(ConfigError) as error:
        load("dev", mlflowWorkers=8)
    assert "over mlflowMemoryLimit (1Gi)" in problem_line(str(error.value), "mlflowWorkers")


@pytest.mark.parametrize(
    "stack, config, expected",
    [
        ("dev", {}, "false"),
        ("prod", {}, "false"),
        ("prod", {"mlflowJobRunner": "on", "mlflowMemoryLimit": "3Gi"}, "true"),
        ("prod", {"mlflowJobRunner": "auto", "mlflowMemoryLimit": "3Gi"}, "false"),
        ("dev", {"mlflowJobRunner": "auto", "mlflowMemoryLimit": "2Gi"}, "true"),
    ],
)
def test_job_runner_is_off_unless_enabled_and_never_on_replicated_servers_in_auto(stack, config, expected):
    ev = evaluate_stack(stack, config)
    assert env_value(ev, server(ev), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION") == expected


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_a_job_runner_that_does_not_fit_the_memory_limit_is_refused(mode):
    with pytest.raises(ConfigError) as error:
        load("dev", mlflowJobRunner=mode)
    line = problem_line(str(error.value), "mlflowJobRunner")
    assert (
        "over mlflowMemoryLimit (1Gi)" in line
        and "set mlflowJobRunner off, or raise mlflowMemoryLimit to at least 2Gi" in line
    )


def test_scratch_and_timeouts_follow_config():
    ev = evaluate_stack("dev", {"mlflowScratchSize": "8Gi", "mlflowRequestTimeoutSeconds": 900})
    pod = pod_of(ev, "Deployment", "mlflow-deployment")
    assert next(v for v in pod["volumes"] if v["name"] == "tmp") == {"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}}
    notes = ingresses(ev)["mlflow-mlflow-dev.localtest.me"]["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "900"
    assert notes["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "900"
    args = server(ev)["args"]
    assert args[args.index("--uvicorn-opts") + 1] == "--timeout-keep-alive 75"
    assert ev.outputs["clientEnvironment"]["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "900"


@pytest.mark.parametrize("config, expected", [({}, "30"), ({"mlflowAuthCacheSeconds": 0}, "0")])
def test_auth_credential_cache_follows_config(config, expected):
    import configparser

    ev = evaluate_stack("dev", config)
    [ini] = [o["stringData"]["basic_auth.ini"] for o in ev.k8s("Secret") if "basic_auth.ini" in o.get("stringData", {})]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(ini)
    assert parser["mlflow"]["auth_cache_ttl_seconds"] == expected


def test_direct_published_stack_validates_strictly_and_passes_the_policy_baseline():
    """The objects only this mode renders (MinIO's Ingress, the widened NetworkPolicies) meet the same
    bars as the default stacks: strict Kubernetes schemas and the policy pack's baseline."""
    from tests.test_manifests import K8S_VERSIONS, k8s_errors
    from tests.test_policy_on_stack import violations

    ev = evaluate_stack("dev", {"artifactTransferMode": "direct", **PUBLISHED})
    objects = [o for o in ev.k8s_objects if o["kind"] in ("Ingress", "NetworkPolicy", "Deployment", "Secret")]
    assert len([o for o in objects if o["kind"] == "Ingress"]) == 2
    assert [e for version in K8S_VERSIONS for obj in objects for e in k8s_errors(obj, version)] == []
    assert violations(ev) == []
