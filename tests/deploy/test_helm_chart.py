"""deploy/helm/ztgw: rendered with the default values (``helm template`` when helm is installed;
otherwise tests/deploy/helmlite.py), every manifest is checked the way a reviewer would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.helmlite import Chart

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "ztgw"


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return Chart(CHART).manifests()


def _kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] in kind.split("|")]


WORKLOAD = "StatefulSet|Deployment"


def test_the_chart_has_every_required_object(manifests: list[dict[str, Any]]) -> None:
    kinds = {m["kind"] for m in manifests}
    assert {"StatefulSet", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "ConfigMap", "NetworkPolicy", "Job"} <= kinds
    for m in manifests:
        assert m["apiVersion"] and m["metadata"]["name"], m["_source"]
        assert m["metadata"]["labels"]["app.kubernetes.io/name"] == "ztgw"


def _pod_specs(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["spec"]["template"]["spec"] for m in manifests
            if m["kind"] in ("StatefulSet", "Deployment", "Job")]


def test_every_container_is_hardened_and_bounded(manifests: list[dict[str, Any]]) -> None:
    for pod in _pod_specs(manifests):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
            assert ":" in c["image"] and not c["image"].endswith(":latest")


def test_deployment_probes_and_rollout(manifests: list[dict[str, Any]]) -> None:
    [dep] = _kind(manifests, WORKLOAD)
    [c] = dep["spec"]["template"]["spec"]["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert dep["spec"]["updateStrategy"]["type"] == "RollingUpdate"  # one pod at a time
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in dep["spec"]["selector"]["matchLabels"].items())
    # secrets come from Secrets, never from the ConfigMap or the chart's values
    [cm] = _kind(manifests, "ConfigMap")
    assert not any(k in cm["data"] for k in ("ZTGW_DIRECTORY_URL", "ZTGW_REDIS_URL",
                                             "ZTGW_AUDIT_ES_API_KEY", "ZTGW_SECRET_PEPPER"))
    assert any("secretRef" in e for e in c["envFrom"])
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/var/lib/ztgw/keys"]["readOnly"] is True
    assert cm["data"]["ZTGW_POLICY_BUNDLE"] in mounts
    assert cm["data"]["ZTGW_ISSUER"].startswith("https://")


def test_service_hpa_pdb_and_networkpolicy_select_the_pods(manifests: list[dict[str, Any]]) -> None:
    [dep] = _kind(manifests, WORKLOAD)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]

    def selects(sel: dict[str, str]) -> bool:
        return bool(sel) and all(pod_labels.get(k) == v for k, v in sel.items())

    svc, pods = _kind(manifests, "Service")
    assert selects(svc["spec"]["selector"]) and svc["spec"]["ports"][0]["targetPort"] == "http"
    assert selects(pods["spec"]["selector"]) and pods["spec"]["clusterIP"] == "None"
    assert dep["spec"]["serviceName"] == pods["metadata"]["name"]
    [hpa] = _kind(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": dep["metadata"]["name"]}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    [pdb] = _kind(manifests, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"]) and pdb["spec"]["minAvailable"] >= 1
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a node drain can proceed
    [np] = _kind(manifests, "NetworkPolicy")
    assert selects(np["spec"]["podSelector"]["matchLabels"])
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert np["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_migration_job_is_a_pre_upgrade_hook(manifests: list[dict[str, Any]]) -> None:
    [job] = _kind(manifests, "Job")
    assert "pre-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


def test_values_switch_objects_off() -> None:
    vals = yaml.safe_load((CHART / "values.yaml").read_text())
    off = Chart(CHART, {"autoscaling": {**vals["autoscaling"], "enabled": False},
                        "networkPolicy": {**vals["networkPolicy"], "enabled": False}}).manifests()
    kinds = [m["kind"] for m in off]
    assert "HorizontalPodAutoscaler" not in kinds and "NetworkPolicy" not in kinds
    [dep] = _kind(off, WORKLOAD)
    assert dep["spec"]["replicas"] == vals["replicaCount"]  # without an HPA the count is fixed


def test_every_pod_keeps_its_audit_spool_on_its_own_volume(manifests: list[dict[str, Any]]) -> None:
    """issue 9 across restarts: the home (spool, chain, checkpoints) is a PersistentVolumeClaim
    per pod, kept when the pod is scaled away, mounted where ZTGW_HOME points."""
    [sts] = _kind(manifests, "StatefulSet")
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "home" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                                   "whenScaled": "Retain"}
    pod = sts["spec"]["template"]["spec"]
    assert "home" not in {v["name"] for v in pod["volumes"]}  # the claim, not an emptyDir
    [c] = pod["containers"]
    [cm] = _kind(manifests, "ConfigMap")
    home = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["home"]
    assert cm["data"].get("ZTGW_HOME", home) == home


def test_without_persistence_a_deployment_with_an_emptydir_home() -> None:
    vals = yaml.safe_load((CHART / "values.yaml").read_text())
    docs = Chart(CHART, {"home": {**vals["home"], "persistence": {
        **vals["home"]["persistence"], "enabled": False}}}).manifests()
    assert not _kind(docs, "StatefulSet") and len(_kind(docs, "Service")) == 1
    [dep] = _kind(docs, "Deployment")
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["home"]["emptyDir"]["sizeLimit"] == vals["home"]["sizeLimit"]
    [hpa] = _kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"


def test_chart_yaml_passes_yamllint() -> None:
    if shutil.which("yamllint") is None:
        pytest.skip("yamllint is not installed")
    conf = "{extends: relaxed, rules: {line-length: {max: 140}}}"
    files = [CHART / "Chart.yaml", CHART / "values.yaml",
             ROOT / "deploy" / "compose" / "compose.yaml"]
    out = subprocess.run(["yamllint", "-d", conf, *map(str, files)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed (not packaged here)")
def test_helm_lint_and_template() -> None:
    lint = subprocess.run(["helm", "lint", str(CHART)], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = subprocess.run(["helm", "template", "ztgw", str(CHART)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    helm_docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    ours = Chart(CHART).manifests()
    for d in ours:
        d.pop("_source")
    assert sorted(map(repr, helm_docs)) == sorted(map(repr, ours))  # the renderer agrees with helm
