#!/usr/bin/env bash
# Installs what building and testing wshub needs on Debian 12, and nothing that is
# already there. Called by `make run` (mode: run) and `make test` (mode: test), so a
# fresh machine needs no step of its own. Idempotent and quiet when all is present.
set -euo pipefail
mode=${1:-run}
cd "$(dirname "$0")/.."

need=()
want() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' || need+=("$1"); }

# Build: compiler, CMake, the libraries the code links against, and cmocka (small;
# the build configures the unit tests even when it only builds the server).
for p in gcc make cmake pkg-config libssl-dev zlib1g-dev libjansson-dev libjwt-dev uthash-dev \
    libcmocka-dev libcurl4-openssl-dev libhiredis-dev; do want "$p"; done
if [ "$mode" = test ]; then
    # Tests: clang for libFuzzer targets, real WebSocket clients.
    for p in clang libclang-rt-14-dev python3 python3-websockets; do want "$p"; done
    # promtool and a Prometheus server that scrapes /metrics (tests/integration/test_metrics_prometheus.py).
    want prometheus
    want openssl # the TLS tests make their CA and certificates with the CLI
    # The Redis tests (tests/unit/test_redis_*.c) start their own redis-server on a free
    # loopback port; `make run` never needs it.
    want redis-server
    # The multi-node tests (tests/integration/test_cluster*.py) put Debian's haproxy in
    # front of the nodes they start.
    want haproxy
    command -v node >/dev/null 2>&1 || need+=(nodejs npm)
    # The web page's browser test drives Debian's chromium through playwright-core.
    want chromium
fi

if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "$mode" = test ] && { [ ! -d tests/js/node_modules/ws ] ||
    [ ! -d tests/js/node_modules/@opentelemetry/otlp-transformer ] ||
    [ ! -d tests/js/node_modules/playwright-core ] || [ ! -d tests/js/node_modules/typescript ]; }; then
    echo "setup: installing npm packages for the JS tests"
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
