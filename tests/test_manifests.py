"""Deployment files, checked offline against their schemas and against each other.

- deploy/k8s: every built-in kind against the Kubernetes OpenAPI schemas that
  kubernetes-validate ships (strict: unknown fields are errors); the KEDA
  ScaledObject (a CRD) against deploy/k8s/schemas/keda-scaledobject-v1alpha1.schema.json.
- deploy/docker/compose.yaml against the compose-spec JSON schema that
  check-jsonschema vendors (check_jsonschema/builtin_schemas/vendor/compose-spec.json).
- nginx: the local cluster's rendered config passes `nginx -t`.
Each validator is also shown a broken document, to prove it rejects one.
"""
import copy
import importlib.machinery
import importlib.resources
import importlib.util
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
DOCKER = ROOT / "deploy" / "docker"
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]


def k8s_documents():
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def by_kind(kind, name=None):
    found = [d for _f, d in k8s_documents()
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert found, (kind, name)
    return found[0] if name else found


def keda_schema():
    return json.loads((K8S / "schemas" / "keda-scaledobject-v1alpha1.schema.json").read_text())


def compose_schema():
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def validate_k8s(doc, version):
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, keda_schema())
    else:
        kubernetes_validate.validate(doc, version, strict=True)


# --- Kubernetes ---------------------------------------------------------------

def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk
    names = [(d["kind"], d["metadata"]["name"]) for _f, d in k8s_documents()]
    assert len(names) == len(set(names))
    assert {i["name"] for i in kustomization["images"]} == {"boxoffice"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name,doc", k8s_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_manifest_is_valid(name, doc, version):
    validate_k8s(doc, version)


def test_validators_reject_broken_manifests():
    deployment = copy.deepcopy(by_kind("Deployment", "boxoffice-web"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    ingress = copy.deepcopy(by_kind("Ingress", "boxoffice-web"))
    ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["servce"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ingress, KUBERNETES_VERSIONS[-1], strict=True)
    scaled = copy.deepcopy(by_kind("ScaledObject", "boxoffice-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, keda_schema())
    scaled = copy.deepcopy(by_kind("ScaledObject", "boxoffice-worker"))
    del scaled["spec"]["triggers"][0]["metadata"]["listName"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, keda_schema())


def _pod_labels(deployment):
    return deployment["spec"]["template"]["metadata"]["labels"]


def _selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_web_tier_hangs_together():
    web = by_kind("Deployment", "boxoffice-web")
    labels = _pod_labels(web)
    assert _selects(web["spec"]["selector"]["matchLabels"], labels)
    service = by_kind("Service", "boxoffice-web")
    assert _selects(service["spec"]["selector"], labels)
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["web"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names == {"http": 8000}
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert "SIGTERM" in pre_stop
    # The drain fits in the grace period.
    config = by_kind("ConfigMap", "boxoffice-config")["data"]
    assert (float(config["DRAIN_TIMEOUT_SECONDS"])
            < web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])

    ingress = by_kind("Ingress", "boxoffice-web")
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "boxoffice-web", "port": {"name": "http"}}

    hpa = by_kind("HorizontalPodAutoscaler", "boxoffice-web")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "boxoffice-web"}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "requests" in container["resources"] and container["resources"]["requests"]["cpu"]
    pdb = by_kind("PodDisruptionBudget", "boxoffice-web")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], labels)


def test_workers_beat_and_migration_hang_together():
    config = by_kind("ConfigMap", "boxoffice-config")["data"]
    worker = by_kind("Deployment", "boxoffice-worker")
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    scaled = by_kind("ScaledObject", "boxoffice-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "boxoffice-worker"
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "redis"
    # KEDA watches the very list the workers consume.
    assert trigger["metadata"]["listName"] == config["CELERY_QUEUE"]
    secret = by_kind("Secret", "boxoffice-secrets")["stringData"]
    redis_url = urlparse(secret["REDIS_URL"])
    assert trigger["metadata"]["address"] == f"{redis_url.hostname}:{redis_url.port}"
    assert trigger["metadata"]["databaseIndex"] == redis_url.path.strip("/")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60

    # Mail and refund reconciliation run in their own group, on their own queue.
    after_sale = by_kind("Deployment", "boxoffice-after-sale")
    assert after_sale["spec"]["template"]["spec"]["containers"][0]["args"] == ["after-sale"]
    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    worker_cmd = re.search(r"^\s+worker\)(.*?);;", entrypoint, re.M | re.S).group(1)
    after_cmd = re.search(r"^\s+after-sale\)(.*?);;", entrypoint, re.M | re.S).group(1)
    assert '-Q "${CELERY_QUEUE:-booking}"' in worker_cmd
    assert '-Q "${AFTER_SALE_QUEUE:-${CELERY_QUEUE:-booking}-after-sale}"' in after_cmd

    beat = by_kind("Deployment", "boxoffice-beat")
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    job = by_kind("Job", "boxoffice-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]

    for deployment in (worker, after_sale, beat, by_kind("Deployment", "boxoffice-web"), job):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            refs = {(k, v["name"]) for e in c["envFrom"] for k, v in e.items()}
            assert refs == {("configMapRef", "boxoffice-config"),
                            ("secretRef", "boxoffice-secrets")}
    secret = by_kind("Secret", "boxoffice-secrets")["stringData"]
    assert {"DATABASE_URL", "SECRET_KEY"} <= set(secret)


# --- Docker --------------------------------------------------------------------

def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_file_is_valid():
    schema = compose_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(compose())


def test_compose_schema_rejects_a_broken_file():
    schema = compose_schema()
    broken = compose()
    broken["services"]["web"]["depends_on"]["migrate"]["condition"] = "done"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validators.validator_for(schema)(schema).validate(broken)
    broken = compose()
    broken["services"]["web"]["restrat"] = "always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validators.validator_for(schema)(schema).validate(broken)


def test_compose_services_and_image_roles():
    services = compose()["services"]
    assert set(services) == {"mariadb", "redis", "migrate", "web", "worker", "after-sale",
                             "beat", "nginx"}
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "after-sale", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
        assert services[name]["image"] == services["migrate"]["image"]  # one image
    assert services["web"]["deploy"]["replicas"] >= 2
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["beat"]["deploy"]["replicas"] == 1
    assert "--maxmemory-policy noeviction" in " ".join(services["redis"]["command"])
    secret_keys = {s.get("environment", {}).get("SECRET_KEY") for n, s in services.items()
                   if n in ("web", "worker", "after-sale", "beat", "migrate")}
    assert len(secret_keys) == 1  # every process shares one key

    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    for role in ("web", "worker", "after-sale", "beat", "migrate"):
        assert services[role]["command"] == [role]
        assert re.search(rf"^\s+{role}\)", entrypoint, re.M), role
    subprocess.run(["sh", "-n", str(DOCKER / "entrypoint.sh")], check=True)

    dockerfile = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)", dockerfile, re.M)
    assert {"app", "lb"} <= set(stages)
    assert services["nginx"]["build"]["target"] == "lb"
    assert services["web"]["build"]["target"] == "app"
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for part in src.split():
            assert (ROOT / part).exists(), f"Dockerfile copies missing {part}"


def test_docker_nginx_config_has_the_load_balancer_rules():
    conf = (DOCKER / "nginx.conf").read_text()
    for rule in ("hash $bo_lb_key consistent", "server web:8000 resolve",
                 "proxy_set_header Upgrade $http_upgrade", "proxy_read_timeout 3600s",
                 "alias /srv/boxoffice/static/", "immutable"):
        assert rule in conf, rule


# --- the local cluster's nginx -------------------------------------------------

def test_local_nginx_config_renders_and_passes_nginx_t(tmp_path):
    """deploy/local/nginx.py (what deploy/local/cluster runs) renders a config nginx accepts."""
    from deploy.local import nginx
    paths = nginx.Paths(nginx.binary(print), tmp_path)
    (tmp_path / "logs").mkdir()
    conf = nginx.render(paths, 18099, [18101, 18102]).read_text()
    assert "@@" not in conf
    assert "server 127.0.0.1:18101" in conf and "server 127.0.0.1:18102" in conf
    assert "listen 127.0.0.1:18099;" in conf
    out = subprocess.run(paths.args() + ["-t"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# --- hardening: pods, Redis, databases, the Ingress ------------------------------

def pod_specs():
    for kind in ("Deployment", "Job"):
        for doc in by_kind(kind):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def test_every_pod_runs_non_root_read_only_without_capabilities():
    specs = dict(pod_specs())
    assert set(specs) == {"boxoffice-web", "boxoffice-worker", "boxoffice-after-sale",
                          "boxoffice-beat", "boxoffice-migrate"}
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            # Where the processes write: prometheus files and beat's schedule, /tmp, instance/.
            for path in ("/run/boxoffice", "/tmp", "/app/instance"):
                assert "emptyDir" in volumes[mounts[path]], (name, path)
            assert volumes[mounts["/etc/boxoffice/redis-ca"]]["secret"]["secretName"] == \
                "boxoffice-redis-ca"


def test_redis_is_reached_over_tls_as_an_acl_user():
    config = by_kind("ConfigMap", "boxoffice-config")["data"]
    assert "REDIS_URL" not in config  # it carries a password: the Secret has it
    secret = by_kind("Secret", "boxoffice-secrets")["stringData"]
    url = urlparse(secret["REDIS_URL"])
    assert url.scheme == "rediss"
    assert url.username == secret["REDIS_USERNAME"] and url.password == secret["REDIS_PASSWORD"]
    assert "ssl_cert_reqs=required" in url.query
    assert "ssl_ca_certs=/etc/boxoffice/redis-ca/ca.crt" in url.query
    trigger = by_kind("ScaledObject", "boxoffice-worker")["spec"]["triggers"][0]["metadata"]
    assert trigger["enableTLS"] == "true"
    assert trigger["usernameFromEnv"] == "REDIS_USERNAME"
    assert trigger["passwordFromEnv"] == "REDIS_PASSWORD"
    assert secret["SECRET_KEY"]  # the placeholder, refused at start (test_startup_checks)


def data_policies():
    return [d for d in yaml.safe_load_all((K8S / "data" / "networkpolicies.yaml").read_text())
            if d]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_data_network_policies_are_valid(version):
    kustomization = yaml.safe_load((K8S / "data" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["networkpolicies.yaml"]
    assert kustomization["namespace"] != yaml.safe_load(
        (K8S / "kustomization.yaml").read_text())["namespace"]
    for doc in data_policies():
        kubernetes_validate.validate(doc, version, strict=True)


def test_only_the_apps_pods_reach_redis_and_mariadb():
    app_namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    app_labels = {"app.kubernetes.io/name": "boxoffice"}
    for kind in ("Deployment", "Job"):
        for doc in by_kind(kind):
            assert _selects(app_labels, doc["spec"]["template"]["metadata"]["labels"])
    policies = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: p
                for p in data_policies()}
    assert set(policies) == {"redis", "mariadb"}
    for target, port in (("redis", 6379), ("mariadb", 3306)):
        spec = policies[target]["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        assert len(spec["ingress"]) == 1
        rule = spec["ingress"][0]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        peers = rule["from"]
        app_peer = peers[0]
        assert app_peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": app_namespace}
        assert app_peer["podSelector"]["matchLabels"] == app_labels
        # Nothing else: no ipBlock, no bare namespace or pod selector that would let more in.
        others = peers[1:]
        if target == "mariadb":
            assert others == []
        else:
            assert others == [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "keda"}},
                "podSelector": {"matchLabels": {"app": "keda-operator"}}}]


def test_ingress_is_https_only_and_keeps_probes_inside():
    notes = by_kind("Ingress", "boxoffice-web")["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/session-cookie-secure"] == "true"
    assert notes["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    internal = by_kind("Ingress", "boxoffice-web-internal")
    assert internal["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/denylist-source-range"] == "0.0.0.0/0,::/0"
    paths = {p["path"] for r in internal["spec"]["rules"] for p in r["http"]["paths"]}
    assert paths == {"/metrics", "/readyz"}
    hosts = {r["host"] for r in by_kind("Ingress", "boxoffice-web")["spec"]["rules"]}
    assert hosts == {r["host"] for r in internal["spec"]["rules"]}


def test_compose_has_no_default_passwords_and_redis_tls_acl():
    text = (DOCKER / "compose.yaml").read_text()
    # A password is required from the environment, never defaulted.
    assert not re.search(r"\$\{[A-Z_]*PASSWORD:-", text)
    assert "change-me" not in text
    services = compose()["services"]
    assert services["mariadb"]["environment"]["MARIADB_RANDOM_ROOT_PASSWORD"] == "1"
    assert "MARIADB_ROOT_PASSWORD" not in services["mariadb"]["environment"]
    redis_cmd = " ".join(services["redis"]["command"])
    for flag in ("--port 0", "--tls-port 6379", "--user default off", "--user boxoffice on",
                 "--maxmemory-policy noeviction", "--appendonly yes",
                 "--tls-ca-cert-file /run/secrets/redis-ca.crt"):
        assert flag in redis_cmd, flag
    for name in ("web", "worker", "after-sale", "beat", "migrate"):
        env = services[name]["environment"]
        # Compose fills the password in; parse the URL with a stand-in.
        url = urlparse(env["REDIS_URL"].replace("${REDIS_PASSWORD:?set REDIS_PASSWORD}", "pw"))
        assert url.scheme == "rediss" and url.username == "boxoffice" and url.password == "pw"
        assert "ssl_cert_reqs=required" in url.query
        assert services[name]["read_only"] is True
        assert services[name]["cap_drop"] == ["ALL"]
        assert "redis-ca.crt" in services[name]["secrets"]
    script = DOCKER / "make-redis-certs.sh"
    subprocess.run(["sh", "-n", str(script)], check=True)
    assert "DNS:redis" in script.read_text()
