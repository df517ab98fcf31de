"""deploy/compose, deploy/nginx, deploy/systemd, deploy/docker: the real tools where they run
here (``nginx -t``, ``systemd-analyze verify``, yamllint), structure checks where they cannot
(images are not pulled on the build machines)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


def _all_services() -> dict[str, Any]:
    doc = _compose()
    services = dict(doc["services"])
    for inc in doc.get("include", []):
        services.update(yaml.safe_load((COMPOSE / inc).read_text())["services"])
    return services


def test_compose_runs_two_replicas_behind_nginx_with_postgres_redis_es_kibana() -> None:
    services = _all_services()
    assert {"gateway-1", "gateway-2", "nginx", "postgres", "redis", "elasticsearch", "kibana",
            "ztgw-init"} <= set(services)
    for name in ("gateway-1", "gateway-2"):
        gw = services[name]
        env = gw["environment"]
        assert env["ZTGW_DIRECTORY_URL"].startswith("postgresql+psycopg://")
        assert env["ZTGW_REDIS_URL"].startswith("redis://")
        assert gw["depends_on"]["ztgw-init"]["condition"] == "service_completed_successfully"
        mounts = {v.split(":")[1]: v for v in gw["volumes"]}
        assert mounts["/var/lib/ztgw/keys"].endswith(":ro")  # shared, written only by ztgw-init
        assert mounts["/var/lib/ztgw/policies"].endswith(":ro")
        assert gw["read_only"] is True and gw["cap_drop"] == ["ALL"]
    homes = {services[n]["volumes"][0].split(":")[0] for n in ("gateway-1", "gateway-2")}
    assert len(homes) == 2  # one audit spool per replica
    assert services["ztgw-init"]["command"] == ["init"]


def test_compose_references_resolve() -> None:
    doc = _compose()
    services = _all_services()
    volumes = set(doc["volumes"]) | {"esdata"}
    networks = set(doc["networks"])
    for name, svc in services.items():
        assert "image" in svc, name
        for dep in svc.get("depends_on", {}):
            assert dep in services, (name, dep)
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                # both files live in deploy/compose: relative sources resolve from there
                assert (COMPOSE / source).resolve().exists(), (name, source)
            else:
                assert source in volumes, (name, source)
        for net in svc.get("networks", []):
            assert net in networks, (name, net)
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)  # published on loopback only


def test_compose_holds_no_secret() -> None:
    text = (COMPOSE / "compose.yaml").read_text()
    for var in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert f"${{{var}:?" in text  # required from .env, never defaulted
    literal = re.sub(r"\$\{[^}]*\}|\$\$\w+", "", text)  # drop ${VAR} / $$VAR references
    assert not re.search(r"(?i)(password|secret)\w*[ \t]*[:=][ \t]*['\"]?\w{4,}", literal), literal
    assert _compose()["networks"]["backend"]["internal"] is True


def _nginx_conf(tmp_path: Path, upstreams: list[str], listen: int) -> Path:
    text = (DEPLOY / "nginx" / "nginx.conf").read_text()
    servers = "\n".join(f"        server {u} max_fails=3 fail_timeout=10s;" for u in upstreams)
    text = re.sub(r"(?m)^\s*server gateway-\d+:8080[^\n]*\n", "", text)
    text = text.replace("keepalive 64;", servers + "\n        keepalive 64;", 1)
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    return conf


def test_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed")
    conf = _nginx_conf(tmp_path, ["127.0.0.1:18081", "127.0.0.1:18082"], 18080)
    out = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "syntax is ok" in out.stderr


def test_nginx_conf_replaces_forwarded_for_and_has_no_affinity() -> None:
    text = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text  # never a client's own list
    assert "$proxy_add_x_forwarded_for" not in text
    assert "ip_hash" not in text and "sticky" not in text  # replicas are stateless
    assert len(re.findall(r"(?m)^\s*server gateway-\d+:8080", text)) == 2


def test_systemd_unit_is_hardened_and_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "ztgw.service").read_text()
    directives = dict(line.split("=", 1) for line in unit.splitlines()
                      if "=" in line and not line.startswith("#"))
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": "",
                       "User": "ztgw", "UMask": "0077"}.items():
        assert directives.get(key) == value, key
    assert directives["ReadWritePaths"] == "/var/lib/ztgw"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify against this machine's real ztgw executable
    exe = Path(sys.executable).with_name("ztgw")
    local = tmp_path / "ztgw.service"
    local.write_text(unit.replace("/opt/ztgw/.venv/bin/ztgw", str(exe)))
    out = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})
    problems = [ln for ln in (out.stdout + out.stderr).splitlines()
                if "ztgw.service" in ln and "not executable" not in ln]
    assert out.returncode == 0 or not problems, out.stdout + out.stderr
    assert not problems, problems


def test_dockerfile_runs_as_non_root_and_copies_what_exists() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert re.search(r"(?m)^USER 10001", text)
    for src in re.findall(r"(?m)^COPY (?!--from)(\S+)", text):
        assert (ROOT / src).exists(), src
    assert os.access(DEPLOY / "docker" / "entrypoint.sh", os.X_OK)
