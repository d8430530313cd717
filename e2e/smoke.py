#!/usr/bin/env python3
"""The README's path, with the release binary, as a newcomer walks it.

`make smoke` (and `make test`) runs it against `target/release/jetshop`:

 1. `jetshop up --seed-demo` on a free port with a fresh data dir;
 2. `/readyz` answers, and `/v1/products` lists the demo catalog;
 3. a customer registers (`POST /v1/users`) and signs in through the code
    flow with PKCE (the `swagger-ui` client, as a browser would);
 4. one `tok_visa` order is accepted (202 with `Location`) and followed to
    `confirmed`;
 5. Ctrl-C (SIGINT) stops everything: exit status 0 and no nats-server left.

Standard library only. The log and data dir are kept when a step fails, or
always with KEEP=1. Usage: smoke.py [path/to/jetshop]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pkce_login  # noqa: E402

# The release binary on a cold machine starts its nats-server, migrates five
# databases and seeds the catalog; a busy CI box needs the margin.
READY_S = 120
# An order's saga runs reservation, authorization and capture over JetStream.
SETTLE_S = 60
DEMO_SKU = "MUG-BLUE"


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body=None, token: str | None = None, headers=None):
    """(status, headers, parsed JSON or text) of one request; never raises on 4xx/5xx."""
    h = {"Accept": "application/json", **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    try:
        resp = urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e:
        resp = e
    raw = resp.read().decode()
    try:
        parsed = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        parsed = raw
    return resp.status, resp.headers, parsed


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def processes_mentioning(needle: str) -> list[str]:
    """Command lines of live processes that mention `needle` (the data dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmd and int(pid) != os.getpid():
            found.append(f"{pid}: {cmd.strip()}")
    return found


def start_up(binary: Path, work: Path, port: int, *extra: str, drop_env: tuple[str, ...] = ()):
    """`jetshop up --seed-demo` on 127.0.0.1:`port`, data in `work`/data, its
    output in `work`/up.log, without the caller's NATS URL and admin account
    (and `drop_env`). The process and the open log file."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NATS_URL", "JETSHOP_ADMIN_EMAIL", "JETSHOP_ADMIN_PASSWORD", *drop_env)
    }
    log = open(work / "up.log", "wb")
    up = subprocess.Popen(
        [str(binary), "up", "--seed-demo", *extra, "--data-dir", str(work / "data"), "--http-addr", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    return up, log


def wait_ready(up: subprocess.Popen, base: str, also: tuple[tuple[str, subprocess.Popen], ...] = ()) -> float:
    """Wait for `base`/readyz to answer 200 while `up` (and every named
    process in `also`) keeps running; the seconds it took."""
    started = time.monotonic()
    while True:
        expect(up.poll() is None, f"jetshop up exited with {up.returncode} before it was ready")
        for name, proc in also:
            expect(proc.poll() is None, f"{name} exited with {proc.returncode}")
        try:
            if call("GET", f"{base}/readyz")[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        expect(time.monotonic() - started < READY_S, f"/readyz not 200 after {READY_S} s")
        time.sleep(0.2)


def demo_product(base: str, strict: bool = False):
    """The demo catalog's mug once it is listed (it is seeded while the
    gateway already answers), and the page it was on. `strict`: any answer
    but 200 on the way is a failure."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        status, _, page = call("GET", f"{base}/v1/products?limit=100")
        if strict:
            expect(status == 200, f"GET /v1/products answered {status}: {page}")
        mug = next((p for p in page["items"] if p["sku"] == DEMO_SKU), None) if status == 200 else None
        if mug:
            return mug, page
        expect(time.monotonic() < deadline, f"{DEMO_SKU} not listed after {SETTLE_S} s" + (f": {page}" if strict else ""))
        time.sleep(0.5)


def main() -> int:
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    binary = Path(sys.argv[1] if len(sys.argv) > 1 else f"{target}/release/jetshop").resolve()
    expect(binary.is_file(), f"no jetshop binary at {binary} (cargo build --release -p jetshop-cli)")

    work = Path(tempfile.mkdtemp(prefix="jetshop-smoke."))
    data = work / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    say(f"{binary.name} up --seed-demo on {base} (data in {data})")
    up, log = start_up(binary, work, port)
    ok = False
    try:
        say(f"ready in {wait_ready(up, base):.1f} s")
        mug, page = demo_product(base, strict=True)
        say(f"catalog lists {len(page['items'])} products, {DEMO_SKU} has {mug['stock']} in stock")

        email = f"smoke-{uuid.uuid4().hex[:12]}@example.com"
        password = f"Smoke-{uuid.uuid4().hex}"
        status, _, user = call("POST", f"{base}/v1/users", {"email": email, "password": password, "display_name": "Smoke"})
        expect(status == 201, f"POST /v1/users answered {status}: {user}")

        granted = pkce_login.tokens(base, email, password, ["orders:read", "orders:write"])
        expect(
            set(granted.get("scope", "").split()) >= {"orders:read", "orders:write"},
            f"granted scope {granted.get('scope')!r}",
        )
        token = granted["access_token"]
        say(f"signed in as {email} through the code flow with PKCE")

        status, headers, accepted = call(
            "POST",
            f"{base}/v1/orders",
            {"lines": [{"product_id": mug["id"], "quantity": 1}], "card_token": "tok_visa"},
            token=token,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        expect(status == 202, f"POST /v1/orders answered {status}: {accepted}")
        location = headers.get("Location")
        expect(bool(location), "202 without a Location header")
        order_url = location if location.startswith("http") else base + location
        deadline = time.monotonic() + SETTLE_S
        while True:
            status, _, order = call("GET", order_url, token=token)
            # Placement is asynchronous: until the orders service has taken
            # the command, the order is not there yet (404).
            expect(status in (200, 404), f"GET {location} answered {status}: {order}")
            if status == 200 and order["status"] in ("confirmed", "cancelled"):
                break
            expect(time.monotonic() < deadline, f"order not ended after {SETTLE_S} s: {order}")
            time.sleep(0.2)
        expect(order["status"] == "confirmed", f"order ended {order['status']}: {order.get('cancel_reason')}")
        say(f"order {order['id']} confirmed")

        say("Ctrl-C")
        up.send_signal(signal.SIGINT)
        try:
            code = up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("jetshop up still running 60 s after SIGINT")
        expect(code == 0, f"jetshop up exited with {code} after SIGINT")
        left = processes_mentioning(str(data))
        expect(not left, f"processes left behind: {left}")
        ok = True
        say("smoke passed")
        return 0
    except (AssertionError, pkce_login.LoginError) as e:
        say(f"FAILED: {e}")
        return 1
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        log.close()
        if ok and not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            if not ok:
                tail = (work / "up.log").read_text(errors="replace").splitlines()[-40:]
                print("\n".join(tail), file=sys.stderr)
            say(f"log and data dir kept in {work}")


if __name__ == "__main__":
    sys.exit(main())
