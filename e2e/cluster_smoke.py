#!/usr/bin/env python3
"""`make cluster` as a newcomer uses it, with the release binary, plus failover.

`make cluster-smoke` runs it:

 1. `ops/scripts/cluster --fresh` on a free port, a fresh work dir and its
    own databases (`jetshop_cs_<random>_<part>`), waiting for its
    `cluster.json` (written once every part is ready);
 2. a customer registers and signs in at gateway 1 through the code flow
    with PKCE; a `tok_visa` order placed through gateway 1 is read through
    gateway 2 until it is `confirmed` (the gateways share the issuer, its
    keys and Redis; the order is in PostgreSQL, behind either orders replica);
 3. the JetStream monitoring API reports 3 replicas, all current, for the
    orders streams;
 4. SIGKILL of one orders replica and of the NATS node that leads
    ORDERS_EVENTS; the script reports both and keeps running; a second
    `tok_visa` order, placed through the one public URL, also ends
    `confirmed`;
 5. SIGINT to the script: exit status 0 and no process of the cluster left.

Standard library only. The work dir and the script's output are kept when
a step fails, or always with KEEP=1; the databases and the Redis keys are
dropped either way.
Usage: cluster_smoke.py [path/to/jetshop]
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import pkce_login  # noqa: E402
from smoke import call, expect, processes_mentioning, say  # noqa: E402

REPO = HERE.parent
# 20 processes start on 2 busy cores: NATS, migrations, then the gateways.
READY_S = 300
# A saga over JetStream; after a node's death the clients reconnect and the
# streams elect new leaders first.
SETTLE_S = 120
STOP_S = 150
# How long a client retries a placement answered 503 during a failover.
RETRY_S = 30
DEMO_SKU = "MUG-BLUE"
DB_PARTS = ["users", "catalog", "orders", "payments", "notifications", "card_processor"]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def jsz(monitor: str) -> dict[str, dict]:
    """Every stream's detail from one node's JetStream monitoring API."""
    _, _, body = call("GET", f"{monitor}/jsz?streams=true&config=true")
    return {s["name"]: s for acc in body.get("account_details", []) for s in acc.get("stream_detail", [])}


def place_order(base: str, token: str, product_id: str) -> str:
    """The order's Location. A 503 (or a cut connection) is what a client
    sees for a moment while a NATS node's clients reconnect elsewhere: it
    retries with the same Idempotency-Key, as any client should."""
    key = str(uuid.uuid4())
    deadline = time.monotonic() + RETRY_S
    while True:
        try:
            status, headers, accepted = call(
                "POST",
                f"{base}/v1/orders",
                {"lines": [{"product_id": product_id, "quantity": 1}], "card_token": "tok_visa"},
                token=token,
                headers={"Idempotency-Key": key},
            )
        except OSError as e:
            status, headers, accepted = None, {}, str(e)
        if status not in (502, 503, 504, None) or time.monotonic() > deadline:
            break
        say(f"POST /v1/orders answered {status} ({accepted}); retrying with the same Idempotency-Key")
        time.sleep(min(float((headers or {}).get("Retry-After") or 1), 2))
    expect(status == 202, f"POST {base}/v1/orders answered {status}: {accepted}")
    location = headers.get("Location")
    expect(bool(location), "202 without a Location header")
    return location


def wait_confirmed(base: str, token: str, location: str) -> dict:
    url = location if location.startswith("http") else base + location
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            status, _, order = call("GET", url, token=token)
        except OSError as e:  # a connection cut while a gateway reconnects
            status, order = None, str(e)
        # 404 until orders has taken the command; 503 while a breaker is open.
        expect(status in (200, 404, 503, 504, None), f"GET {url} answered {status}: {order}")
        if status == 200 and order["status"] in ("confirmed", "cancelled"):
            expect(order["status"] == "confirmed", f"order ended {order['status']}: {order.get('cancel_reason')}")
            return order
        expect(time.monotonic() < deadline, f"order not ended after {SETTLE_S} s: {status} {order}")
        time.sleep(0.3)


def drop_databases(prefix: str) -> None:
    url = os.environ.get("JETSHOP_CLUSTER_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
    for part in DB_PARTS:
        subprocess.run(["psql", f"{url}/postgres", "-XAtq", "-c", f'DROP DATABASE IF EXISTS "{prefix}{part}" WITH (FORCE)'],
                       capture_output=True)


def drop_redis_keys(prefix: str) -> None:
    """The gateways' rate-limit and idempotency keys under this run's prefix."""
    if not shutil.which("redis-cli"):
        return
    keys = subprocess.run(["redis-cli", "--scan", "--pattern", f"{prefix}*"], capture_output=True, text=True).stdout.split()
    if keys:
        subprocess.run(["redis-cli", "del", *keys], capture_output=True)


def main() -> int:
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    binary = Path(sys.argv[1] if len(sys.argv) > 1 else f"{target}/release/jetshop").resolve()
    expect(binary.is_file(), f"no jetshop binary at {binary} (cargo build --release -p jetshop-cli)")

    tmp = Path(tempfile.mkdtemp(prefix="jetshop-cluster-smoke."))
    work = tmp / "cluster"
    tag = secrets.token_hex(4)
    prefix = f"jetshop_cs_{tag}_"
    out = open(tmp / "cluster.out", "wb")
    argv = [str(REPO / "ops/scripts/cluster"), "--fresh", "--jetshop", str(binary), "--work-dir", str(work),
            "--http-port", "0", "--db-prefix", prefix, "--redis-key-prefix", f"jetshop-cs-{tag}:"]
    say(" ".join(argv[:1] + ["..."] + argv[1:]))
    started = time.monotonic()
    cluster = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    ok = False
    try:
        info_path = work / "cluster.json"
        while not info_path.exists():
            expect(cluster.poll() is None, f"ops/scripts/cluster exited with {cluster.returncode} before it was ready")
            expect(time.monotonic() - started < READY_S, f"not ready after {READY_S} s")
            time.sleep(0.5)
        time.sleep(0.2)  # the file is written whole, but give the banner a moment too
        info = json.loads(info_path.read_text())
        say(f"cluster ready in {time.monotonic() - started:.1f} s ({len(info['pids'])} processes)")
        public, (gw1, gw2) = info["public_url"], info["gateways"][:2]
        pids = info["pids"]
        monitors = info["nats_monitoring"]

        status, _, page = call("GET", f"{public}/v1/products?limit=100")
        expect(status == 200, f"GET /v1/products answered {status}: {page}")
        mug = next((p for p in page["items"] if p["sku"] == DEMO_SKU), None)
        expect(mug is not None, f"{DEMO_SKU} not in the demo catalog: {page}")

        email = f"cluster-{uuid.uuid4().hex[:12]}@example.com"
        password = f"Cluster-{uuid.uuid4().hex}"
        status, _, user = call("POST", f"{gw1}/v1/users", {"email": email, "password": password, "display_name": "Cluster"})
        expect(status == 201, f"POST /v1/users answered {status}: {user}")
        token = pkce_login.access_token(gw1, email, password, ["orders:read", "orders:write"])
        say(f"signed in at gateway 1 ({gw1}) through the code flow with PKCE")

        location = place_order(gw1, token, mug["id"])
        order = wait_confirmed(gw2, token, location)
        say(f"order {order['id']} placed through gateway 1, confirmed as read through gateway 2 ({gw2})")

        streams = jsz(monitors[0])
        for name in ("ORDERS_EVENTS", "ORDERS_COMMANDS"):
            s = streams.get(name)
            expect(s is not None, f"no {name} stream in {sorted(streams)}")
            replicas = s["config"]["num_replicas"]
            followers = s.get("cluster", {}).get("replicas", [])
            expect(replicas == 3, f"{name} has {replicas} replicas")
            expect(len(followers) == 2, f"{name} has followers {followers}")
        leader = streams["ORDERS_EVENTS"]["cluster"]["leader"]
        say(f"ORDERS_EVENTS and ORDERS_COMMANDS: 3 replicas; ORDERS_EVENTS led by {leader}")

        victim_node = f"nats-{leader.lstrip('n')}"
        for name in ("orders-1", victim_node):
            os.kill(pids[name], signal.SIGKILL)
        say(f"SIGKILL orders-1 (pid {pids['orders-1']}) and {victim_node} (pid {pids[victim_node]}, the stream leader)")

        location = place_order(public, token, mug["id"])
        order = wait_confirmed(public, token, location)
        say(f"order {order['id']} placed after the kills through {public}: confirmed")
        expect(cluster.poll() is None, f"ops/scripts/cluster exited with {cluster.returncode} after the kills")
        survivor = next(m for m, n in zip(monitors, ("n1", "n2", "n3")) if n != leader)
        deadline = time.monotonic() + RETRY_S
        while True:
            new_leader = jsz(survivor)["ORDERS_EVENTS"].get("cluster", {}).get("leader")
            if new_leader not in (None, leader) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        expect(new_leader not in (None, leader), f"ORDERS_EVENTS leader after the kill: {new_leader}")
        say(f"ORDERS_EVENTS now led by {new_leader}")

        say("Ctrl-C")
        stop = time.monotonic()
        cluster.send_signal(signal.SIGINT)
        try:
            code = cluster.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ops/scripts/cluster still running {STOP_S} s after SIGINT")
        say(f"stopped in {time.monotonic() - stop:.1f} s")
        expect(code == 0, f"ops/scripts/cluster exited with {code} after SIGINT")
        left = [f"{n} ({pid})" for n, pid in pids.items() if alive(pid)]
        expect(not left, f"processes left behind: {left}")
        left = processes_mentioning(str(work))
        expect(not left, f"processes left behind: {left}")
        output = (tmp / "cluster.out").read_text(errors="replace")
        for name in ("orders-1", victim_node):
            expect(f"{name} (pid {pids[name]}) exited on its own" in output, f"the script did not report {name}'s death")
        expect("exit codes:" not in output, "a part did not exit 0 on SIGTERM; see the output")
        ok = True
        say(f"cluster smoke passed in {time.monotonic() - started:.1f} s")
        return 0
    except (AssertionError, pkce_login.LoginError, KeyError, OSError) as e:
        say(f"FAILED: {type(e).__name__}: {e}")
        return 1
    finally:
        if cluster.poll() is None:
            cluster.send_signal(signal.SIGTERM)
            try:
                cluster.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                cluster.kill()
                cluster.wait()
        out.close()
        drop_databases(prefix)
        drop_redis_keys(f"jetshop-cs-{tag}:")
        if ok and not os.environ.get("KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if not ok:
                tail = (tmp / "cluster.out").read_text(errors="replace").splitlines()[-60:]
                print("\n".join(tail), file=sys.stderr)
            say(f"output and work dir kept in {tmp}")


if __name__ == "__main__":
    sys.exit(main())
