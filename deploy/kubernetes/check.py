#!/usr/bin/env python3
"""Builds every overlay with `kubectl kustomize` and checks that the output is valid Kubernetes
and has what deploy/kubernetes promises. Run by `make test` (scripts/check-deploy.sh) with the
venv that holds kubernetes-validate.

1. Schemas: every object validates strictly (unknown fields are errors) against the offline
   schemas of kubernetes-validate for each version in VERSIONS. The Prometheus Operator's
   ServiceMonitor and PrometheusRule are custom resources with no schema there: they are
   skipped by name (CRD_KINDS), never silently, and checked here for the fields that matter;
   any other kind without a schema is an error.
2. Promises: proxies ≥ 2 with readiness on /healthz and a liveness probe that is not
   /healthz, a PodDisruptionBudget and a CPU HorizontalPodAutoscaler on them, spread across
   zones, location from the node's zone label, every container with resources and a
   non-root, read-only-root, no-privilege-escalation security context, the configuration
   mounted as a folder (a subPath mount never sees updates, so reload-on-change would not
   work), Services, ServiceMonitor, PrometheusRule and Grafana dashboard consistent with the
   pods, the config file and dashboards/; two binlog readers (a StatefulSet, updated one pod
   at a time) with distinct replication server ids, spread across zones, a PDB, a headless
   Service, and the proxies' lag_source.sidecar.urls naming each reader.
3. The generated monitoring resources match dashboards/ (generate.py --check) and the rules
   pass `promtool check rules`; the configuration passes both binaries' --check-config when
   `--bin-dir` gives them.

`--self-test` breaks each promise in a copy of the built objects and fails unless the check
notices: a check that cannot fail is no check.
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

import yaml
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import generate  # noqa: E402

# The current Kubernetes release, and the oldest this deployment documents (trafficDistribution
# is GA from 1.33).
VERSIONS = ["1.37.0", "1.33.0"]
# Custom resources of the Prometheus Operator: no schema in kubernetes-validate, checked below.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# Objects an overlay expects the operator to create outside git.
EXTERNAL = {"production": {("Secret", "rwsplit-passwords")}}
PROXY = "rwsplit-proxy"
READER = "rwsplit-binlog-reader"
ZONE_KEY = "topology.kubernetes.io/zone"
# The StatefulSet pod label holding its ordinal (GA in Kubernetes 1.32).
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
# The reader's per-instance server id offset (binlog-reader --server-id-offset).
OFFSET_ENV = "RWSPLIT_BINLOG_SERVER_ID_OFFSET"
WORKLOADS = ("Deployment", "StatefulSet")


def build(overlay):
    out = subprocess.run(
        ["kubectl", "kustomize", overlay], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"kubectl kustomize {overlay} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs, kind, name=None):
    for d in docs:
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
            return d
    return None


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def addr_port(addr):
    return int(str(addr).rsplit(":", 1)[1])


class Checker:
    def __init__(self, overlay, docs):
        self.overlay = overlay
        self.docs = docs
        self.problems = []

    def fail(self, what, why):
        self.problems.append(f"{what}: {why}")

    # 1. schemas -----------------------------------------------------------------------------
    def schemas(self):
        for d in self.docs:
            what = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
            if (d.get("apiVersion"), d.get("kind")) in CRD_KINDS:
                continue  # checked in crds()
            for v in VERSIONS:
                try:
                    kubernetes_validate.validate(d, v, strict=True)
                except SchemaNotFoundError:
                    self.fail(what, f"no schema for {d.get('apiVersion')} {d.get('kind')} in {v}")
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    self.fail(what, f"invalid against Kubernetes {v}: {path}: {e.message}")

    # 2. promises ----------------------------------------------------------------------------
    def config(self):
        cm = find(self.docs, "ConfigMap", "rwsplit-config")
        if not cm or "rwsplit.yaml" not in cm.get("data", {}):
            self.fail("ConfigMap/rwsplit-config", "missing, or without rwsplit.yaml")
            return {}
        return yaml.safe_load(cm["data"]["rwsplit.yaml"])

    def pods(self):
        for d in self.docs:
            if d.get("kind") in WORKLOADS:
                yield d

    def every_pod(self):
        cm_name = "rwsplit-config"
        for dep in self.pods():
            what = f"{dep['kind']}/{dep['metadata']['name']}"
            spec = dep["spec"]["template"]["spec"]
            psc = spec.get("securityContext", {})
            if spec.get("automountServiceAccountToken") is not False:
                self.fail(what, "automountServiceAccountToken must be false (no API access needed)")
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for c in spec.get("containers", []):
                cw = f"{what} container {c['name']}"
                csc = c.get("securityContext", {})
                if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                    self.fail(cw, "runAsNonRoot must be true")
                uid = csc.get("runAsUser", psc.get("runAsUser"))
                if uid is None or uid == 0:
                    self.fail(cw, "runAsUser must be a non-zero uid")
                if csc.get("readOnlyRootFilesystem") is not True:
                    self.fail(cw, "readOnlyRootFilesystem must be true")
                if csc.get("allowPrivilegeEscalation") is not False:
                    self.fail(cw, "allowPrivilegeEscalation must be false")
                if "ALL" not in csc.get("capabilities", {}).get("drop", []):
                    self.fail(cw, "capabilities.drop must contain ALL")
                res = c.get("resources", {})
                for k in ("cpu", "memory"):
                    if k not in res.get("requests", {}):
                        self.fail(cw, f"resources.requests.{k} missing")
                if "memory" not in res.get("limits", {}):
                    self.fail(cw, "resources.limits.memory missing")
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        self.fail(cw, f"{probe} missing")
                mounted = False
                for m in c.get("volumeMounts", []):
                    v = volumes.get(m["name"], {})
                    if v.get("configMap", {}).get("name") == cm_name:
                        mounted = True
                        if "subPath" in m:
                            self.fail(cw, "the config is mounted with subPath, which never sees ConfigMap updates")
                        if m["mountPath"].rstrip("/") != "/etc/rwsplit":
                            self.fail(cw, f"config mounted at {m['mountPath']}, args read /etc/rwsplit/rwsplit.yaml")
                if not mounted:
                    self.fail(cw, "does not mount the rwsplit-config ConfigMap")
            for v in volumes.values():
                ref = v.get("configMap", {}).get("name")
                if ref and not find(self.docs, "ConfigMap", ref):
                    self.fail(what, f"mounts ConfigMap {ref}, which is not in the build")
                ref = v.get("secret", {}).get("secretName")
                if ref and not find(self.docs, "Secret", ref) and ("Secret", ref) not in EXTERNAL.get(self.overlay, set()):
                    self.fail(what, f"mounts Secret {ref}, which is not in the build")

    def proxy(self, cfg):
        dep = find(self.docs, "Deployment", PROXY)
        if not dep:
            self.fail(f"Deployment/{PROXY}", "missing")
            return
        what = f"Deployment/{PROXY}"
        spec = dep["spec"]
        if spec.get("replicas", 1) < 2:
            self.fail(what, f"replicas must be at least 2, got {spec.get('replicas', 1)}")
        if spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") != 0:
            self.fail(what, "rolling updates must keep every proxy up (maxUnavailable: 0)")
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        c = next((c for c in pod["containers"] if c["name"] == "proxy"), None)
        if not c:
            self.fail(what, "no container named proxy")
            return
        http = addr_port(cfg.get("proxy", {}).get("http_listen", "127.0.0.1:9033"))
        rp = c.get("readinessProbe", {}).get("httpGet", {})
        if rp.get("path") != "/healthz" or port_number(c, rp.get("port")) != http:
            self.fail(what, f"readinessProbe must GET /healthz on proxy.http_listen's port {http}")
        lp = c.get("livenessProbe", {}).get("httpGet", {})
        if not lp or lp.get("path") == "/healthz" or port_number(c, lp.get("port")) != http:
            self.fail(what, "livenessProbe must GET the admin port, and not /healthz (a database outage would restart every proxy)")
        listen = addr_port(cfg.get("proxy", {}).get("listen", "127.0.0.1:6033"))
        if listen not in [p["containerPort"] for p in c.get("ports", [])]:
            self.fail(what, f"no containerPort {listen} (proxy.listen)")
        self.spread(what, pod, labels)
        # Location from the node's zone label.
        var = cfg.get("location_env")
        env = {e["name"]: e for e in c.get("env", [])}
        ref = env.get(var or "", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if not var or ref != f"metadata.labels['{ZONE_KEY}']":
            self.fail(what, f"location must come from the zone label: rwsplit.yaml location_env ({var}) set from metadata.labels['{ZONE_KEY}']")
        if "location" in cfg:
            self.fail("ConfigMap/rwsplit-config", "a fixed `location` would send every zone's reads to one zone; use location_env")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= cfg.get("proxy", {}).get("shutdown_timeout_s", 30):
            self.fail(what, "terminationGracePeriodSeconds must exceed proxy.shutdown_timeout_s (sessions finish before SIGKILL)")
        # PDB and HPA.
        self.pdb(PROXY, labels, spec.get("replicas", 1))
        hpa = find(self.docs, "HorizontalPodAutoscaler")
        if not hpa or hpa["spec"]["scaleTargetRef"].get("name") != PROXY:
            self.fail("HorizontalPodAutoscaler", f"missing, or not scaling {PROXY}")
        else:
            cpu = [m for m in hpa["spec"].get("metrics", []) if m.get("resource", {}).get("name") == "cpu"]
            if not cpu:
                self.fail("HorizontalPodAutoscaler", "must scale on CPU")
            if hpa["spec"].get("minReplicas", 1) < 2:
                self.fail("HorizontalPodAutoscaler", "minReplicas must be at least 2")
        # Service.
        svc = find(self.docs, "Service", PROXY)
        if not svc or not selects(svc["spec"].get("selector"), labels):
            self.fail(f"Service/{PROXY}", "missing, or does not select the proxy pods")
        else:
            for p in svc["spec"]["ports"]:
                if port_number(c, p.get("targetPort", p["port"])) is None:
                    self.fail(f"Service/{PROXY}", f"targetPort {p.get('targetPort')} is no port of the proxy")

    def spread(self, what, pod, labels):
        """Zone spread: topologySpreadConstraints and podAntiAffinity on the zone, selecting
        the workload's own pods."""
        spread = [t for t in pod.get("topologySpreadConstraints", []) if t.get("topologyKey") == ZONE_KEY]
        anti = pod.get("affinity", {}).get("podAntiAffinity", {})
        terms = [t.get("podAffinityTerm", t) for k in anti.values() for t in k]
        terms = [t for t in terms if t.get("topologyKey") == ZONE_KEY]
        own = lambda t: selects(t.get("labelSelector", {}).get("matchLabels"), labels)  # noqa: E731
        if not any(map(own, spread)) or not any(map(own, terms)):
            self.fail(what, f"must spread across zones (topologySpreadConstraints and podAntiAffinity on {ZONE_KEY})")

    def pdb(self, name, labels, replicas):
        pdb = find(self.docs, "PodDisruptionBudget", name)
        if not pdb or not selects(pdb["spec"].get("selector", {}).get("matchLabels"), labels):
            self.fail(f"PodDisruptionBudget/{name}", f"missing, or does not select the {name} pods")
        elif pdb["spec"].get("maxUnavailable", 0) >= replicas or pdb["spec"].get("minAvailable", 0) >= replicas:
            self.fail(f"PodDisruptionBudget/{name}", f"would block every drain or allow every {name} pod down")

    def reader(self, cfg):
        """Two readers or more (HA): a StatefulSet whose pods each present their own server id
        (sidecar.server_id + ordinal), replaced one at a time, spread, behind a PDB and a
        headless Service, every one of them in the proxies' urls."""
        dep = find(self.docs, "StatefulSet", READER)
        what = f"StatefulSet/{READER}"
        if not dep:
            self.fail(what, "missing")
            return
        if find(self.docs, "Deployment", READER):
            self.fail(f"Deployment/{READER}", "a reader Deployment beside the StatefulSet would share a server id with it")
        spec = dep["spec"]
        replicas = spec.get("replicas", 1)
        if replicas < 2:
            self.fail(what, f"replicas must be at least 2 (one reader down must leave lag known), got {replicas}")
        if spec.get("updateStrategy", {}).get("type", "RollingUpdate") != "RollingUpdate" or \
                spec.get("updateStrategy", {}).get("rollingUpdate", {}).get("maxUnavailable", 1) != 1:
            self.fail(what, "updates must replace one reader at a time (RollingUpdate, maxUnavailable 1)")
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        c = pod["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        ref = env.get(OFFSET_ENV, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if ref != POD_INDEX or any(a.startswith("--server-id") for a in c.get("args", [])) or "RWSPLIT_BINLOG_SERVER_ID" in env:
            self.fail(what, f"each reader needs its own server id: {OFFSET_ENV} from {POD_INDEX}, and no fixed --server-id / RWSPLIT_BINLOG_SERVER_ID")
        base = cfg.get("sidecar", {}).get("server_id", 4242)
        if not isinstance(base, int) or base < 1 or base + replicas - 1 > 2**32 - 1:
            self.fail("ConfigMap/rwsplit-config", f"sidecar.server_id {base!r} + ordinals 0..{replicas - 1} must stay within 1..4294967295")
        self.spread(what, pod, labels)
        anti = pod.get("affinity", {}).get("podAntiAffinity", {})
        keys = [t.get("podAffinityTerm", t).get("topologyKey") for k in anti.values() for t in k]
        keys += [t.get("topologyKey") for t in pod.get("topologySpreadConstraints", [])]
        if "kubernetes.io/hostname" not in keys:
            self.fail(what, "must keep the readers on different nodes (podAntiAffinity or topologySpreadConstraints on kubernetes.io/hostname)")
        self.pdb(READER, labels, replicas)
        port = addr_port(cfg.get("sidecar", {}).get("http_listen", "127.0.0.1:9034"))
        rp = c.get("readinessProbe", {}).get("httpGet", {})
        if rp.get("path") != "/healthz" or port_number(c, rp.get("port")) != port:
            self.fail(what, f"readinessProbe must GET /healthz on sidecar.http_listen's port {port}")
        var = cfg.get("location_env")
        if var and var not in env:
            self.fail(what, f"{var} must be set: the shared rwsplit.yaml says location_env: {var}")
        source = cfg.get("proxy", {}).get("lag_source", {})
        sidecar = source.get("sidecar", {}) if isinstance(source, dict) else {}
        urls = list(sidecar.get("urls") or []) + ([sidecar["url"]] if sidecar.get("url") else [])
        svc = find(self.docs, "Service", READER)
        if not svc or not selects(svc["spec"].get("selector"), labels):
            self.fail(f"Service/{READER}", "missing, or does not select the reader")
            return
        if spec.get("serviceName") != READER or svc["spec"].get("clusterIP") != "None":
            self.fail(f"Service/{READER}", "must be headless (clusterIP: None) and the StatefulSet's serviceName: each reader needs its own DNS name")
        svc_port = svc["spec"]["ports"][0]["port"]
        if port_number(c, svc["spec"]["ports"][0].get("targetPort", svc_port)) != port:
            self.fail(f"Service/{READER}", f"targetPort is not sidecar.http_listen's port {port}")
        # One URL per reader pod, by its stable name: <statefulset>-<ordinal>.<service>.
        want = [f"http://{READER}-{i}.{READER}:{svc_port}/lag" for i in range(replicas)]
        if sorted(urls) != sorted(want):
            self.fail("ConfigMap/rwsplit-config", f"proxy.lag_source.sidecar.urls {urls} must list every reader: {want}")

    def secrets(self, cfg):
        paths = [cfg.get("monitor", {}).get("password_file")]
        paths += [u.get("password_file") for u in cfg.get("proxy", {}).get("users", [])]
        secret = find(self.docs, "Secret", "rwsplit-passwords")
        for dep in self.pods():
            spec = dep["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            mounts = {
                m["mountPath"].rstrip("/"): volumes[m["name"]]
                for c in spec["containers"] for m in c.get("volumeMounts", [])
            }
            for p in paths:
                if not p:
                    self.fail("ConfigMap/rwsplit-config", "passwords must come from password_file (a mounted Secret), not the ConfigMap")
                    continue
                d, key = os.path.split(p)
                v = mounts.get(d, {})
                if v.get("secret", {}).get("secretName") != "rwsplit-passwords":
                    self.fail(f"{dep['kind']}/{dep['metadata']['name']}", f"{p} is not in the mounted rwsplit-passwords Secret")
                elif secret and key not in {**secret.get("data", {}), **secret.get("stringData", {})}:
                    self.fail("Secret/rwsplit-passwords", f"has no key {key} (for {p})")

    # CRDs: the fields that matter, checked by hand ---------------------------------------------
    def crds(self):
        sm = find(self.docs, "ServiceMonitor")
        if not sm:
            self.fail("ServiceMonitor", "missing")
        else:
            sel = sm.get("spec", {}).get("selector", {}).get("matchLabels")
            services = [s for s in self.docs if s.get("kind") == "Service" and selects(sel, s["metadata"].get("labels", {}))]
            names = {s["metadata"]["name"] for s in services}
            if names != {PROXY, READER}:
                self.fail("ServiceMonitor", f"must select the proxy and reader Services, selects {sorted(names)}")
            for e in sm["spec"].get("endpoints", []):
                for s in services:
                    if e.get("port") not in [p.get("name") for p in s["spec"]["ports"]]:
                        self.fail("ServiceMonitor", f"endpoint port {e.get('port')!r} is not a port of Service/{s['metadata']['name']}")
                if e.get("path", "/metrics") != "/metrics":
                    self.fail("ServiceMonitor", "endpoints must scrape /metrics")
            if not sm["spec"].get("endpoints"):
                self.fail("ServiceMonitor", "no endpoints")
        pr = find(self.docs, "PrometheusRule")
        if not pr:
            self.fail("PrometheusRule", "missing")
        else:
            groups = pr.get("spec", {}).get("groups", [])
            for g in groups:
                for r in g.get("rules", []):
                    if ("alert" in r) == ("record" in r) or not isinstance(r.get("expr"), str):
                        self.fail("PrometheusRule", f"rule {r} needs exactly one of alert/record and an expr")
            with open(generate.RULES) as f:
                if groups != yaml.safe_load(f)["groups"]:
                    self.fail("PrometheusRule", "groups differ from dashboards/rwsplit.rules.yml")
            self.promtool({"groups": groups})
        gd = [d for d in self.docs if d.get("kind") == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
        if len(gd) != 1:
            self.fail("Grafana dashboard ConfigMap", "exactly one ConfigMap must carry the grafana_dashboard: \"1\" label")
        else:
            data = gd[0].get("data", {})
            with open(generate.DASHBOARD) as f:
                want = f.read()
            if data.get("rwsplit-overview.json") != want:
                self.fail("Grafana dashboard ConfigMap", "rwsplit-overview.json differs from dashboards/")
            else:
                json.loads(want)

    def promtool(self, rules):
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            yaml.safe_dump(rules, f)
        try:
            out = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
            if out.returncode != 0:
                self.fail("PrometheusRule", f"promtool check rules: {out.stdout}{out.stderr}")
        finally:
            os.unlink(f.name)

    def run(self, schemas=True):
        cfg = self.config()
        if schemas:
            self.schemas()
        self.every_pod()
        self.proxy(cfg)
        self.reader(cfg)
        self.secrets(cfg)
        self.crds()
        return self.problems


def check_config_with_binaries(docs, bin_dir):
    """Both binaries must accept the ConfigMap's rwsplit.yaml as it is."""
    text = find(docs, "ConfigMap", "rwsplit-config")["data"]["rwsplit.yaml"]
    problems = []
    with tempfile.TemporaryDirectory() as d:
        # The Secret's files, as the pods see them, at a local folder.
        cfg = yaml.safe_load(text)
        files = [cfg["monitor"].get("password_file")] + [u.get("password_file") for u in cfg["proxy"].get("users", [])]
        for mount in {os.path.dirname(p) for p in files if p}:
            local = os.path.join(d, mount.strip("/").replace("/", "_"))
            os.makedirs(local, exist_ok=True)
            for p in files:
                if p and os.path.dirname(p) == mount:
                    with open(os.path.join(local, os.path.basename(p)), "w") as f:
                        f.write("secret\n")
            text = text.replace(mount + "/", local + "/")
        path = os.path.join(d, "rwsplit.yaml")
        with open(path, "w") as f:
            f.write(text)
        # The reader as the StatefulSet's last pod runs it: with the highest ordinal as offset.
        reader = find(docs, "StatefulSet", READER)
        last = str(reader["spec"].get("replicas", 1) - 1) if reader else "0"
        for binary in ("rwsplit-proxy", "rwsplit-binlog-reader"):
            env = dict(os.environ, RWSPLIT_LOCATION="zone-b")
            if binary == "rwsplit-binlog-reader":
                env[OFFSET_ENV] = last
            out = subprocess.run([os.path.join(bin_dir, binary), "--config", path, "--check-config"],
                                 capture_output=True, text=True, env=env)
            if out.returncode != 0:
                problems.append(f"{binary} --check-config rejects the ConfigMap: {out.stderr.strip()}")
    return problems


# --self-test: each mutation breaks one promise; the check must say so. -------------------------
def _proxy_container(docs):
    return find(docs, "Deployment", PROXY)["spec"]["template"]["spec"]["containers"][0]


def _reader(docs):
    return find(docs, "StatefulSet", READER)


def _reader_container(docs):
    return _reader(docs)["spec"]["template"]["spec"]["containers"][0]


def _mutate_config(docs, fn):
    cm = find(docs, "ConfigMap", "rwsplit-config")
    cfg = yaml.safe_load(cm["data"]["rwsplit.yaml"])
    fn(cfg)
    cm["data"]["rwsplit.yaml"] = yaml.safe_dump(cfg)


MUTATIONS = {
    "one proxy": lambda d: find(d, "Deployment", PROXY)["spec"].update(replicas=1),
    "no readiness probe": lambda d: _proxy_container(d).pop("readinessProbe"),
    "liveness on /healthz": lambda d: _proxy_container(d)["livenessProbe"]["httpGet"].update(path="/healthz"),
    "root filesystem writable": lambda d: _proxy_container(d)["securityContext"].update(readOnlyRootFilesystem=False),
    "runs as root": lambda d: (_proxy_container(d)["securityContext"].update(runAsNonRoot=False)),
    "no resources": lambda d: _proxy_container(d).pop("resources"),
    "config by subPath": lambda d: _proxy_container(d)["volumeMounts"][0].update(subPath="rwsplit.yaml"),
    "no PDB": lambda d: d.remove(find(d, "PodDisruptionBudget", PROXY)),
    "no HPA": lambda d: d.remove(find(d, "HorizontalPodAutoscaler")),
    "no zone spread": lambda d: find(d, "Deployment", PROXY)["spec"]["template"]["spec"].pop("topologySpreadConstraints"),
    "fixed location": lambda d: _mutate_config(d, lambda c: (c.pop("location_env"), c.update(location="zone-a"))),
    "dashboard unlabelled": lambda d: next(x for x in d if x["metadata"]["name"] == "rwsplit-grafana-dashboard")["metadata"]["labels"].pop("grafana_dashboard"),
    "rule edited": lambda d: find(d, "PrometheusRule")["spec"]["groups"][1]["rules"].pop(),
    "ServiceMonitor on a wrong port": lambda d: find(d, "ServiceMonitor")["spec"]["endpoints"][0].update(port="metrics"),
    "misspelled field": lambda d: _proxy_container(d).update(readinesProbe={}),
    "one reader": lambda d: _reader(d)["spec"].update(replicas=1),
    "readers share a server id": lambda d: _reader_container(d)["env"].pop(0),
    "readers all replaced at once": lambda d: _reader(d)["spec"].update(updateStrategy={"type": "OnDelete"}),
    "readers in one zone": lambda d: _reader(d)["spec"]["template"]["spec"].pop("topologySpreadConstraints"),
    "readers on one node": lambda d: _reader(d)["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].pop(),
    "no reader PDB": lambda d: d.remove(find(d, "PodDisruptionBudget", READER)),
    "reader Service not headless": lambda d: find(d, "Service", READER)["spec"].pop("clusterIP"),
    "proxies ask one reader": lambda d: _mutate_config(d, lambda c: c["proxy"]["lag_source"]["sidecar"]["urls"].pop()),
    "proxies ask a load-balanced reader": lambda d: _mutate_config(d, lambda c: c["proxy"]["lag_source"].update(sidecar={"url": f"http://{READER}:9034/lag"})),
    "password inline": lambda d: _mutate_config(d, lambda c: c["monitor"].update(password="x", password_file=None)),
}


def self_test(overlay, docs):
    problems = []
    for name, mutate in MUTATIONS.items():
        broken = copy.deepcopy(docs)
        mutate(broken)
        found = Checker(overlay, broken).run(schemas=(name == "misspelled field"))
        if not found:
            problems.append(f"self-test: breaking it ({name}) went unnoticed")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", help="folder with rwsplit-proxy and rwsplit-binlog-reader, to --check-config the ConfigMap")
    ap.add_argument("--self-test", action="store_true", help="also check that each broken promise is noticed")
    args = ap.parse_args()
    problems = []
    if generate.main_check() != 0:
        problems.append("monitoring resources out of date (run deploy/kubernetes/generate.py)")
    overlays = sorted(os.listdir(os.path.join(HERE, "overlays")))
    for overlay in overlays:
        docs = build(os.path.join(HERE, "overlays", overlay))
        found = Checker(overlay, docs).run()
        if args.bin_dir:
            found += check_config_with_binaries(docs, args.bin_dir)
        if args.self_test:
            found += self_test(overlay, docs)
        kinds = sorted({d["kind"] for d in docs})
        if found:
            problems += [f"overlays/{overlay}: {p}" for p in found]
        else:
            print(f"overlays/{overlay}: {len(docs)} objects ({', '.join(kinds)}) valid against "
                  f"Kubernetes {' and '.join(VERSIONS)} (CRDs checked by hand: ServiceMonitor, PrometheusRule); "
                  f"promises hold{'; self-test ok' if args.self_test else ''}")
    if problems:
        print("deploy/kubernetes check failed:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
