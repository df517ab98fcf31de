#!/usr/bin/env bash
# System packages the test suite uses for real components (INTERFACES.md: `make test` installs
# what is missing).  Debian/Ubuntu only; without root or apt it says what is missing and goes
# on (the tests that need a missing tool are skipped and say so).
set -uo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
command -v nmap >/dev/null 2>&1 || need+=(nmap)
command -v sqlmap >/dev/null 2>&1 || need+=(sqlmap)
# the console's browser tests (Playwright drives Debian's chromium) and readable Chinese
# screenshots (a CJK font)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
fc-list 2>/dev/null | grep -qi -e wqy -e "noto sans cjk" || need+=(fonts-wqy-microhei)
# issue 11: the suite starts its own PostgreSQL and nginx on free loopback ports (tests/scale,
# tests/deploy, ZTGW_TEST_BACKEND=postgres); the packages' own services are not used
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v yamllint >/dev/null 2>&1 || need+=(yamllint)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages (install them for the full suite): ${need[*]}" >&2
  exit 0
fi
echo "== installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "could not install some of: ${need[*]}" >&2
# redis-server's package may start a system instance; the tests start their own on free ports
exit 0
