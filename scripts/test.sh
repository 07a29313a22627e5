#!/usr/bin/env bash
# Runs every test: vet, staticcheck and govulncheck, the race-detector pass
# (with the import-direction check of internal/layers), the pass without
# -race that covers the nbio transport, the fuzz seed corpora, and the
# end-to-end tests (npm ws interop, a cut network link). Installs what a
# fresh machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v node >/dev/null && command -v npm >/dev/null || need_apt+=(nodejs npm)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v curl >/dev/null || need_apt+=(curl) # the event-stream e2e test reads /sse with curl -N
# nginx in front of three nodes (e2e), systemd-analyze for the unit file.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The redisbroker and natsbroker tests want Redis at 127.0.0.1:6379 and NATS
# at 127.0.0.1:4222 (they fall back to a private redis-server / an
# in-process NATS, and skip Redis only when neither is possible).
reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need_brokers=()
  # The Redis Cluster tests start their own redis-server processes, so the
  # binaries are needed even when a Redis answers on 6379.
  { command -v redis-server >/dev/null && command -v redis-cli >/dev/null; } || need_brokers+=(redis-server redis-tools)
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || reachable 4222 || need_brokers+=(nats-server)
  if [ ${#need_brokers[@]} -gt 0 ]; then
    say "installing ${need_brokers[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_brokers[@]}" >/dev/null || true
  fi
fi
if ! reachable 6379 && command -v redis-server >/dev/null; then
  say "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
if ! reachable 4222 && [ -x /usr/sbin/nats-server ] && command -v start-stop-daemon >/dev/null; then
  say "starting nats-server on 127.0.0.1:4222"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /tmp/nats-js
fi

# Chromium (for the browser tests) and the npm packages in e2e/node.
say "browser and npm set-up"
./scripts/browser-setup.sh

say "gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './e2e/node/*'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; exit 1; fi
go vet ./...

# staticcheck and govulncheck, pinned, with a local copy of the Go
# vulnerability database (scripts/lint.sh installs and caches both).
say "staticcheck and govulncheck"
./scripts/lint.sh

# The Redis Cluster tests (3 masters + 3 replicas on free 127.0.0.1 ports,
# started and stopped by the tests themselves) must run here, not skip.
export SWITCHBOARD_REQUIRE_CLUSTERS=1

say "go test -race (fuzz seed corpora included)"
go test -race -count=1 -timeout 15m ./...

say "go test without -race (the nbio transport)"
go test -count=1 -timeout 10m -run . . ./server/

# Every fuzz target runs for a short fixed time on top of its seed corpus
# (which the passes above already ran). FUZZTIME=10m ./scripts/test.sh, or
# go test -run=NONE -fuzz=^FuzzName$ -fuzztime=1h ./pkg, runs them longer.
fuzztime=${FUZZTIME:-5s}
# A real finding always leaves its input under testdata/fuzz/; a failure
# that leaves none is the fuzzing engine itself (a worker that hung on a
# loaded machine), so that run is repeated once before it counts.
count_inputs() { { ls "$1" 2>/dev/null || true; } | wc -l; }
fuzz_once() {
  local pkg=$1 target=$2 dir out
  dir=$(go list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$target
  for attempt in 1 2; do
    before=$(count_inputs "$dir")
    if out=$(go test -run=NONE -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" 2>&1); then
      echo "$out" | tail -n 3
      return 0
    fi
    echo "$out"
    if [ "$(count_inputs "$dir")" -ne "$before" ]; then
      echo "$target found a failing input: see $dir (commit it with the fix)"
      return 1
    fi
    echo "$target: the fuzzing engine failed without an input; trying again ($attempt)"
  done
  return 1
}
say "fuzzing each target for $fuzztime"
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "--- $target ($pkg)"
    fuzz_once "$pkg" "$target"
  done
done

say "all tests passed"
