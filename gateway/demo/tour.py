"""The short tour ``make run`` prints: URLs, demo accounts and a curl that works as printed."""

from __future__ import annotations

from typing import Any


def tour(base: str, accounts: dict[str, Any]) -> str:
    clients = {c["client_id"]: c for c in accounts["clients"]}
    a = clients["demo-analytics"]
    lines = [
        "",
        "ztgw demo is running",
        "====================",
        f"  gateway          {base}",
        f"  OIDC discovery   {base}/.well-known/openid-configuration",
        f"  health / metrics {base}/healthz  {base}/readyz  {base}/metrics",
        "",
        "Demo applications (client_credentials):",
    ]
    for c in accounts["clients"]:
        if c["client_secret"]:
            lines.append(f"  {c['client_id']:<15} secret {c['client_secret']:<28} {c['name']}"
                         f" — {c['note']}")
    if accounts.get("users"):
        lines += ["", "Demo people (sign in at the login page; demo-only passwords):"]
        for u in accounts["users"]:
            lines.append(f"  {u['username']:<10} {u['password']:<20} {u['display_name']} "
                         f"{u['department']} 密级 {u['clearance']}")
        lines.append(f"  login page       {base}/login")
    lines += [
        "",
        "Datasets: " + ", ".join(f"{r['prefix']} ({r['classification']})"
                                 for r in accounts["routes"]),
        "",
        "Try it — get a token, read masked population records:",
        "",
        f"  TOKEN=$(curl -s -u {a['client_id']}:{a['client_secret']} "
        f"-d grant_type=client_credentials {base}/oauth2/token "
        "| python3 -c 'import sys,json; print(json.load(sys.stdin)[\"access_token\"])')",
        f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/api/population/persons?page=1&size=3'",
        "",
        "Then see the decision in the audit trail — from the CLI, or as the security",
        "operations centre through the admin API:",
        "",
        "  .venv/bin/ztgw audit search --limit 5",
        f"  SOC=$(curl -s -u demo-secops:demo-secops-secret-2026 -d grant_type=client_credentials "
        f"{base}/oauth2/token | python3 -c 'import sys,json; print(json.load(sys.stdin)[\"access_token\"])')",
        f"  curl -s -H \"Authorization: Bearer $SOC\" '{base}/admin/v1/audit/events?decision=deny&limit=3'",
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)
