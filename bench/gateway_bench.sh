#!/usr/bin/env bash
# Data-plane throughput on loopback, in one run, same worker count everywhere (issue 7):
#   the demo upstream directly, nginx as a plain reverse proxy to it, ztgw with the full
#   security path (token verified, policy decision, masking, audit) with a warm and a cold
#   token cache, and ztgw in pass-through mode.  wrk, 2 threads, 32 connections.
# Usage: bash bench/gateway_bench.sh [seconds-per-run]   (needs: nginx, wrk — Debian packages)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
PY=${PY:-.venv/bin/python}
ZTGW=(".venv/bin/ztgw")
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk"; exit 2; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx missing: apt-get install -y nginx-light"; exit 2; }

WORK=$(mktemp -d)
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); NG=$(free_port); GW=$(free_port); PT=$(free_port); W2=$(free_port)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done  # let them flush before rm
  rm -rf "$WORK"
}
trap cleanup EXIT

export ZTGW_HOME="$WORK/home"
"${ZTGW[@]}" init >/dev/null 2>&1
"${ZTGW[@]}" demo seed --upstream-url "http://127.0.0.1:$UP" >/dev/null 2>&1
"${ZTGW[@]}" demo upstream --port "$UP" & PIDS+=($!)

cat > "$WORK/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  upstream demo { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location / { proxy_pass http://demo; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGX
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK"

ZTGW_PORT=$GW "${ZTGW[@]}" serve --port "$GW" & PIDS+=($!)
# pass-through: the same gateway code with the security pipeline switched off (bench only);
# its own home, because a home's audit spool has a single writer
ZTGW_HOME="$WORK/home-pt" "${ZTGW[@]}" init >/dev/null 2>&1
ZTGW_HOME="$WORK/home-pt" "${ZTGW[@]}" demo seed --upstream-url "http://127.0.0.1:$UP" >/dev/null 2>&1
ZTGW_HOME="$WORK/home-pt" ZTGW_DATA_PLANE_PASSTHROUGH=true "${ZTGW[@]}" serve --port "$PT" & PIDS+=($!)

# two worker processes sharing one home through its audit daemon (ztgw serve --workers 2)
ZTGW_HOME="$WORK/home-w2" "${ZTGW[@]}" init >/dev/null 2>&1
ZTGW_HOME="$WORK/home-w2" "${ZTGW[@]}" demo seed --upstream-url "http://127.0.0.1:$UP" >/dev/null 2>&1
ZTGW_HOME="$WORK/home-w2" "${ZTGW[@]}" serve --port "$W2" --workers 2 & PIDS+=($!)

for url in "http://127.0.0.1:$UP/healthz" "http://127.0.0.1:$GW/readyz" "http://127.0.0.1:$PT/healthz" "http://127.0.0.1:$NG/healthz" "http://127.0.0.1:$W2/readyz"; do
  for _ in $(seq 300); do curl -sf "$url" >/dev/null 2>&1 && break; sleep 0.2; done
done

Q="/api/population/persons?page=1&size=5"
TOKEN=$(curl -s -u demo-analytics:demo-analytics-secret-2026 -d grant_type=client_credentials \
  "http://127.0.0.1:$GW/oauth2/token" | $PY -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
TOKEN_W2=$(curl -s -u demo-analytics:demo-analytics-secret-2026 -d grant_type=client_credentials \
  "http://127.0.0.1:$W2/oauth2/token" | $PY -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
BYTES=$(curl -s "http://127.0.0.1:$UP$Q" | wc -c)
# cold cache: a fresh token for every request, issued with the gateway's own signing key
COLD="$WORK/tokens.txt"
$PY bench/_mint_tokens.py "$ZTGW_HOME" "http://127.0.0.1:$GW" 60000 > "$COLD"
COLD_SM2="$WORK/tokens-sm2.txt"  # the issue's cold target is for SM2 tokens (SM2SM3 JWS)
$PY bench/_mint_tokens.py "$ZTGW_HOME" "http://127.0.0.1:$GW" 20000 SM2SM3 > "$COLD_SM2"
cat > "$WORK/cold.lua" <<LUA
local tokens = {}
for line in io.lines("$COLD") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  return wrk.format("GET", "$Q", { ["Authorization"] = "Bearer " .. t })
end
LUA
# each wrk thread has its own Lua state: offset them so they do not replay each other's tokens
for spec in "cold_setup:$COLD:30000" "cold_sm2_setup:$COLD_SM2:10000"; do
IFS=: read -r script file offset <<<"$spec"
cat > "$WORK/$script.lua" <<LUA
local tokens = {}
for line in io.lines("$file") do tokens[#tokens + 1] = line end
local n = 0
setup = function(thread) n = n + 1; thread:set("base", n * $offset) end
local i = 0
request = function()
  i = i + 1
  local t = tokens[((base + i) % #tokens) + 1]
  return wrk.format("GET", "$Q", { ["Authorization"] = "Bearer " .. t })
end
LUA
done

run() { # name url [extra wrk args…]
  local name=$1 url=$2; shift 2
  local out; out=$(wrk -t2 -c32 -d"${DUR}s" --latency "$@" "$url" 2>&1)
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  local p99; p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
  printf '%s\t%s\t%s\t%s\n' "$name" "${rps:-0}" "${p99:-?}" "${non2xx:-0}"
}

echo "# $(date -u +%FT%TZ) wrk -t2 -c32 -d${DUR}s, response body ${BYTES} bytes, 1 worker each" >&2
RESULTS=$(
  run "upstream direct" "http://127.0.0.1:$UP$Q"
  run "nginx proxy" "http://127.0.0.1:$NG$Q"
  run "ztgw pass-through" "http://127.0.0.1:$PT$Q"
  run "ztgw full, warm token cache" "http://127.0.0.1:$GW$Q" -H "Authorization: Bearer $TOKEN"
  run "ztgw full, cold token cache (ES256)" "http://127.0.0.1:$GW" -s "$WORK/cold_setup.lua"
  run "ztgw full, cold token cache (SM2)" "http://127.0.0.1:$GW" -s "$WORK/cold_sm2_setup.lua"
  run "ztgw full, warm, --workers 2" "http://127.0.0.1:$W2$Q" -H "Authorization: Bearer $TOKEN_W2"
)
echo "$RESULTS" | $PY bench/_gateway_report.py

# Added latency at half of ztgw's peak (issue 7: p99 added ≤ 5 ms): 8 connections, each pausing
# between requests so the offered rate is about half the warm full-path peak measured above;
# the same paced load on nginx gives the baseline, the difference of the p99s is what ztgw adds.
WARM=$(echo "$RESULTS" | awk -F'\t' '$1=="ztgw full, warm token cache" {print $2}')
PACE_MS=$($PY -c "print(max(1, round(8 * 1000 / max(1.0, float('${WARM:-0}') / 2))))")
cat > "$WORK/paced.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
delay = function() return $PACE_MS end
LUA
paced() { # url → "req/s p99" at the paced rate
  wrk -t2 -c8 -d"${DUR}s" --latency -s "$WORK/paced.lua" "$1" 2>&1 |
    awk '/Requests\/sec/ {r=$2} $1=="99%" {p=$2} END {print r, p}'
}
read -r NG_RPS NG_P99 <<<"$(paced "http://127.0.0.1:$NG$Q")"
read -r GW_RPS GW_P99 <<<"$(paced "http://127.0.0.1:$GW$Q")"
$PY - "$NG_RPS" "$NG_P99" "$GW_RPS" "$GW_P99" "$WARM" <<'PYEOF'
import sys
def ms(v: str) -> float:
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float("nan")
ng_rps, ng_p99, gw_rps, gw_p99, warm = sys.argv[1:]
added = ms(gw_p99) - ms(ng_p99)
print(f"\nPaced at ~half the warm peak ({float(warm):,.0f}/2 req/s offered, 8 connections): "
      f"nginx {float(ng_rps):,.0f} req/s p99 {ng_p99}; ztgw full {float(gw_rps):,.0f} req/s "
      f"p99 {gw_p99}; **p99 added by ztgw: {added:.2f} ms** (target ≤ 5 ms)")
PYEOF

# ==== issue 11 block (owner: scale-out) — two replicas behind nginx vs one ====================
# Both cases run on the scaled-out backend: one loopback PostgreSQL (directory) and one
# redis-server (shared state), started here and stopped on exit; the replicas share the keys
# folder and one issuer (the nginx URL), each has its own home (audit spool).  The nginx in
# front is deploy/nginx/nginx.conf with the server lines and the listen port substituted.
# Skip with ZTGW_BENCH_REPLICAS=0.  Needs PostgreSQL binaries (/usr/lib/postgresql/*/bin) and
# redis-server.
cleanup_replicas() {  # gateways first, then their backends, then the common cleanup
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "${PGAS[@]}" "$PGCTL" -D "$PGD/data" -m fast stop >/dev/null 2>&1 || true
  [ -f "$WORK/redis.pid" ] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null
  for f in "$WORK"/nginx-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  rm -rf "$PGD"
  cleanup
}
bench_two_replicas() {
  local pgbin; pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$pgbin" ] || ! command -v redis-server >/dev/null; then
    echo "two-replica case skipped: PostgreSQL or redis-server missing" >&2; return 0
  fi
  local R="$WORK/replicas" PGP RDP N1 N2 G1 G2
  mkdir -p "$R"
  PGD=$(mktemp -d)  # outside $WORK (0700 root): the postgres user must reach it
  PGAS=()
  if [ "$(id -u)" -eq 0 ]; then PGAS=(runuser -u postgres --); chown postgres "$PGD"; fi
  PGCTL="$pgbin/pg_ctl"
  PGP=$(free_port); RDP=$(free_port); N1=$(free_port); N2=$(free_port); G1=$(free_port); G2=$(free_port)
  "${PGAS[@]}" "$pgbin/initdb" -D "$PGD/data" -A trust -U postgres >/dev/null
  "${PGAS[@]}" "$PGCTL" -D "$PGD/data" -l "$PGD/log" -w -o "-p $PGP -k $PGD -c listen_addresses=127.0.0.1" start >/dev/null
  redis-server --port "$RDP" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$WORK/redis.pid" --dir "$WORK" >/dev/null
  trap cleanup_replicas EXIT
  export ZTGW_DIRECTORY_URL="postgresql+psycopg://postgres@127.0.0.1:$PGP/postgres"
  export ZTGW_REDIS_URL="redis://127.0.0.1:$RDP/0"
  # nginx → replica 1 only (N1), nginx → both replicas (N2); the same config file
  for spec in "$N1:$G1" "$N2:$G1 $G2"; do
    local port=${spec%%:*} servers="" g
    for g in ${spec#*:}; do servers+="        server 127.0.0.1:$g max_fails=3 fail_timeout=10s;\n"; done
    sed -e '/server gateway-[0-9]*:8080/d' -e "s|keepalive 64;|$servers        keepalive 64;|" \
        -e "s|listen 8080;|listen 127.0.0.1:$port;|" -e "s|^pid nginx.pid;|pid $WORK/nginx-$port.pid;|" \
        deploy/nginx/nginx.conf > "$WORK/nginx-$port.conf"
    "$NGINX" -c "$WORK/nginx-$port.conf" -p "$WORK" 2>/dev/null
  done
  local issuer="http://127.0.0.1:$N2"
  ZTGW_HOME="$R/home-1" ZTGW_ISSUER=$issuer "${ZTGW[@]}" init >/dev/null 2>&1
  ZTGW_HOME="$R/home-1" ZTGW_ISSUER=$issuer "${ZTGW[@]}" demo seed --upstream-url "http://127.0.0.1:$UP" >/dev/null 2>&1
  mkdir -m 0700 "$R/home-2" && cp -a "$R/home-1/keys" "$R/home-2/keys"
  ZTGW_HOME="$R/home-2" ZTGW_ISSUER=$issuer ZTGW_POLICY_BUNDLE="$R/home-1/policies/active" "${ZTGW[@]}" init >/dev/null 2>&1
  ZTGW_HOME="$R/home-1" ZTGW_ISSUER=$issuer "${ZTGW[@]}" serve --port "$G1" & PIDS+=($!)
  ZTGW_HOME="$R/home-2" ZTGW_ISSUER=$issuer ZTGW_POLICY_BUNDLE="$R/home-1/policies/active" \
    "${ZTGW[@]}" serve --port "$G2" & PIDS+=($!)
  for url in "http://127.0.0.1:$G1/readyz" "http://127.0.0.1:$G2/readyz" "http://127.0.0.1:$N2/nginx-healthz"; do
    for _ in $(seq 150); do curl -sf "$url" >/dev/null 2>&1 && break; sleep 0.2; done
  done
  local tok; tok=$(curl -s -u demo-analytics:demo-analytics-secret-2026 -d grant_type=client_credentials \
    "http://127.0.0.1:$N2/oauth2/token" | $PY -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
  echo "# two replicas: PostgreSQL + Redis backend, nginx worker_processes auto, $(nproc) cores" >&2
  local results g1pid=${PIDS[-2]} g2pid=${PIDS[-1]}
  # besides req/s: the replicas' CPU time per request (utime+stime of the serve processes over
  # the run) — if it stays flat from one replica to two, nothing shared on the request path
  # grows with the replica count, and throughput grows with the cores the replicas get
  cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
  run_cpu() { # name url pids…
    local name=$1 url=$2; shift 2
    local before; before=$(cpu_ticks "$@")
    local out; out=$(wrk -t2 -c32 -d"${DUR}s" --latency -H "Authorization: Bearer $tok" "$url" 2>&1)
    local after; after=$(cpu_ticks "$@")
    local n; n=$(echo "$out" | awk '/requests in/ {print $1}')
    local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    local p99; p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "${rps:-0}" "${p99:-?}" "${non2xx:-0}" \
      "$($PY -c "print(f'{($after - $before) / $(getconf CLK_TCK) / max(1, ${n:-0}) * 1e3:.2f}')")"
  }
  results=$(
    run_cpu "1 replica, direct" "http://127.0.0.1:$G1$Q" "$g1pid"
    run_cpu "nginx -> 1 replica" "http://127.0.0.1:$N1$Q" "$g1pid"
    run_cpu "nginx -> 2 replicas" "http://127.0.0.1:$N2$Q" "$g1pid" "$g2pid"
  )
  echo "$results" | $PY -c '
import sys
rows = [line.split("\t") for line in sys.stdin.read().strip().splitlines()]
one = next(float(r[1]) for r in rows if r[0] == "nginx -> 1 replica")
print("| run (ztgw full path, warm token cache) | req/s | vs nginx -> 1 replica | p99 latency | non-2xx | replica CPU ms / request |")
print("|---|---:|---:|---:|---:|---:|")
for name, rps, p99, bad, cpu in rows:
    print(f"| {name} | {float(rps):,.0f} | {float(rps) / one:.2f}x | {p99} | {bad} | {cpu} |")'
  for port in "$N1" "$N2"; do kill "$(cat "$WORK/nginx-$port.pid")" 2>/dev/null || true; done
}
if [ "${ZTGW_BENCH_REPLICAS:-1}" = 1 ]; then bench_two_replicas; fi
# ==== end of issue 11 block ===================================================================
