#!/usr/bin/env bash
# `make e2e`: start `jetshop up --seed-demo` on free ports with a fresh data
# dir, then walk the newcomer's path through Swagger UI in headless Chromium
# (newcomer.mjs: sign in, place orders, watch them end, find the emails,
# `jetshop dlq ls`), with the release binary `make up` runs. Installs what
# is missing (ops/scripts/browser-deps: Debian's chromium, playwright-core).
# The work dir (log, data dir with the .eml files, screenshots) is kept
# when a step fails, or always with KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

ops/scripts/browser-deps

# The release binary, as `make up` runs it (a no-op build when it is fresh).
cargo build --release -q -p jetshop-cli
bin="${CARGO_TARGET_DIR:-target}/release/jetshop"
[[ "$bin" = /* ]] || bin="$PWD/$bin"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
work="$(mktemp -d -t jetshop-e2e.XXXXXX)"
pid=""
cleanup() {
  local status=$?
  if [[ -n "$pid" ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -f "$work/up.log" ]]; then
    say "last lines of jetshop up's log:"
    tail -n 40 "$work/up.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
  fi
  if [[ $status -ne 0 || -n "${KEEP:-}" ]]; then
    say "logs, data dir and screenshots kept in $work"
  else
    rm -rf "$work"
  fi
  exit $status
}
trap cleanup EXIT INT TERM

say "starting jetshop up on http://127.0.0.1:$port (data in $work)"
env -u NATS_URL -u JETSHOP_ADMIN_EMAIL -u JETSHOP_ADMIN_PASSWORD \
  "$bin" up --seed-demo --data-dir "$work/data" --http-addr "127.0.0.1:$port" >"$work/up.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/up.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null
# The nats-server `up` started prints its URL first ("NATS: nats://...");
# `jetshop dlq ls` is pointed at it.
nats_url="$(sed -n 's/^NATS: \(nats:\/\/[^ ]*\).*/\1/p' "$work/up.log" | head -n 1)"
[[ -n "$nats_url" ]] || { say "no 'NATS: nats://...' line in $work/up.log"; exit 1; }

mkdir -p "$work/shots"
JETSHOP_URL="http://127.0.0.1:$port" \
ADMIN_EMAIL=admin@jetshop.local \
ADMIN_PASSWORD="$(cat "$work/data/admin-password")" \
DATA_DIR="$work/data" \
NATS_URL="$nats_url" \
JETSHOP_BIN="$bin" \
SCREENSHOT_DIR="$work/shots" \
  node e2e/newcomer.mjs
