"""Format gateway_bench.sh results as a Markdown table with ratios to nginx."""

import sys

rows = [line.split("\t") for line in sys.stdin.read().strip().splitlines()]
nginx = next(float(r[1]) for r in rows if r[0] == "nginx proxy")
print("| run | req/s | vs nginx | p99 latency | non-2xx |")
print("|---|---:|---:|---:|---:|")
for name, rps, p99, bad in rows:
    print(f"| {name} | {float(rps):,.0f} | {float(rps) / nginx:.0%} | {p99} | {bad} |")
