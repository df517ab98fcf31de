"""``ztgw drill report``: the debrief as one self-contained HTML file with SVG charts.

Charts: alert timeline (per 10-minute bucket), alerts by attack category, detected vs
missed per simulated attack, responses taken by action, time to detect per attack, and the
posture findings of the last scans recorded in the drills folder.  No JavaScript, no
external assets: it opens offline and prints.
"""

from __future__ import annotations

import html
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ztgw.audit.query import parse_time

from .alerts import AlertBook
from .response import ResponseBook

_CSS = """body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:.9em}.miss{color:#b00;font-weight:bold}
.ok{color:#070}svg text{font-size:11px}"""


def _bars(title: str, data: list[tuple[str, float]], color: str = "#3a6ea5", unit: str = "") -> str:
    if not data:
        return f"<h2>{html.escape(title)}</h2><p>none</p>"
    top = max(v for _, v in data) or 1
    h = 22 * len(data) + 10
    rows = []
    for i, (label, v) in enumerate(data):
        w = int(360 * v / top)
        y = 5 + 22 * i
        rows.append(f'<text x="0" y="{y + 14}">{html.escape(label[:32])}</text>'
                    f'<rect x="210" y="{y}" width="{max(w, 1)}" height="16" fill="{color}"/>'
                    f'<text x="{215 + w}" y="{y + 13}">{v:g}{unit}</text>')
    return (f"<h2>{html.escape(title)}</h2><svg width='640' height='{h}' role='img' "
            f"aria-label='{html.escape(title)}'>{''.join(rows)}</svg>")


def _timeline(alerts: list[dict[str, Any]]) -> str:
    buckets: Counter[str] = Counter(a["@timestamp"][:15] + "0" for a in alerts)
    data = sorted(buckets.items())
    return _bars("Alert timeline (per 10 minutes, UTC)", [(k.replace("T", " "), float(v)) for k, v in data])


def build_report(conf: Any, since: str, output: Path) -> dict[str, Any]:
    since_iso = parse_time(since)
    home = Path(conf.home)
    book = AlertBook(conf.audit_settings().db_path, home / "detection" / "detection.db")
    alerts = book.list(since=since, limit=10_000)
    responses = ResponseBook(home / "detection" / "detection.db")
    try:
        actions = [a for a in responses.list(limit=10_000)
                   if datetime.fromtimestamp(a.created, UTC).isoformat() >= since_iso[:19]]
    finally:
        responses.close()
    drills = []
    folder = home / "detection" / "drills"
    for f in sorted(folder.glob("drill-*.json")) if folder.exists() else []:
        doc = orjson.loads(f.read_bytes())
        if str(doc.get("finished", "")) >= since_iso[:19]:
            drills.append(doc)
    posture = []
    pfolder = home / "detection" / "posture"
    for f in sorted(pfolder.glob("*.json")) if pfolder.exists() else []:
        posture.append(orjson.loads(f.read_bytes()))
    by_cat = Counter(a.get("rule", {}).get("category", "?") for a in alerts)
    attacks = [r for d in drills for r in d.get("attacks", [])]
    detected = sum(1 for r in attacks if r["detected"])
    parts = [
        "<!doctype html><html lang='zh-CN'><meta charset='utf-8'>",
        f"<title>攻防演练报告 / Drill report</title><style>{_CSS}</style>",
        f"<h1>攻防演练复盘报告 — drill debrief</h1><p>Since {html.escape(since_iso)}; "
        f"generated {datetime.now(UTC).isoformat()[:19]} UTC. {len(alerts)} alerts, "
        f"{len(actions)} responses, {len(attacks)} simulated attacks ({detected} detected).</p>",
        _timeline(alerts),
        _bars("Alerts by attack type", sorted(((k, float(v)) for k, v in by_cat.items()),
                                              key=lambda x: -x[1])),
        _bars("Detected vs missed (simulated attacks)",
              [("detected", float(detected)), ("missed", float(len(attacks) - detected))], "#5a8f29"),
        _bars("Responses taken", sorted(((k, float(v)) for k, v in Counter(
            a.kind for a in actions).items()), key=lambda x: -x[1]), "#a55a3a"),
        _bars("Time to detect (s)", [(r["attack"], float(r["time_to_detect_s"]))
                                     for r in attacks if r.get("time_to_detect_s") is not None],
              "#7a3aa5", " s"),
        "<h2>Simulated attacks</h2><table><tr><th>attack</th><th>started</th><th>requests</th>"
        "<th>detected</th><th>rules</th><th>responses</th></tr>",
    ]
    for r in attacks:
        cls, word = ("ok", "yes") if r["detected"] else ("miss", "MISSED")
        parts.append(f"<tr><td>{html.escape(r['attack'])}</td><td>{html.escape(r['started'][:19])}</td>"
                     f"<td>{r['requests']}</td><td class='{cls}'>{word}</td>"
                     f"<td>{html.escape(', '.join(r['rules']))}</td>"
                     f"<td>{html.escape(', '.join(x['action'] + ' ' + x['target'] for x in r['responses']))}"
                     "</td></tr>")
    parts.append("</table><h2>Alerts</h2><table><tr><th>time</th><th>rule</th><th>severity</th>"
                 "<th>source</th><th>user</th><th>message</th></tr>")
    for a in alerts[:500]:
        parts.append(f"<tr><td>{html.escape(a['@timestamp'][:19])}</td>"
                     f"<td>{html.escape(a['rule'].get('name', ''))}</td>"
                     f"<td>{a['event'].get('severity', '')}</td>"
                     f"<td>{html.escape(str(a.get('source', {}).get('ip', '')))}</td>"
                     f"<td>{html.escape(str(a.get('user', {}).get('name', '')))}</td>"
                     f"<td>{html.escape(a.get('message', ''))}</td></tr>")
    parts.append("</table><h2>Posture findings</h2>")
    if posture:
        parts.append("<ul>" + "".join(
            f"<li>{html.escape(str(f.get('severity', '')))}: {html.escape(str(f.get('finding', '')))}</li>"
            for p in posture for f in p.get("findings", [])) + "</ul>")
    else:
        parts.append("<p>No posture scans recorded (run <code>ztgw scan ports|tls|passwords|"
                     "coverage</code>).</p>")
    parts.append("</html>")
    output.write_text("\n".join(parts), encoding="utf-8")
    return {"output": str(output), "alerts": len(alerts), "responses": len(actions),
            "attacks": len(attacks), "detected": detected}
