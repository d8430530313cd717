#!/usr/bin/env python3
"""Logs joined to traces: one checkout's JSON log, read back by trace id.

`make log-join` runs it with the release binary: `jetshop up --seed-demo
--log-format json`, one `tok_visa` order followed to `confirmed`, Ctrl-C;
then every line of the log is parsed as JSON, and

 - the lines that name the order (`order_id` in the line or its span) all
   carry a `trace_id` and a `span_id`, and the same `trace_id`: one trace
   per order;
 - under that trace id there are lines from every part the order passes
   through: gateway, orders, catalog, payments and notifications (a line's
   part is its crate, or for the shared consumer runner, the durable it
   runs: `orders-saga-stock` is orders).

Standard library only. KEEP=1 keeps the log. Usage: log_join.py [path/to/jetshop]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pkce_login  # noqa: E402
from smoke import SETTLE_S, call, demo_product, expect, free_port, say, start_up, wait_ready  # noqa: E402

PARTS = {"gateway", "orders", "catalog", "payments", "notifications"}


def part_of(line: dict) -> str | None:
    """Which part wrote a log line: its crate, or the durable it consumes for."""
    target = line.get("target", "")
    crate = target.split("::", 1)[0]
    if crate.startswith("jetshop_") and crate not in ("jetshop_platform", "jetshop_cli"):
        return crate.removeprefix("jetshop_").replace("_", "-")
    consumer = (line.get("span") or {}).get("consumer") or (line.get("fields") or {}).get("consumer")
    if consumer:
        return consumer.split("-", 1)[0]
    return None


def order_of(line: dict) -> str | None:
    for where in (line.get("fields") or {}, line.get("span") or {}):
        if where.get("order_id"):
            return str(where["order_id"])
    return None


def main() -> int:
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    binary = Path(sys.argv[1] if len(sys.argv) > 1 else f"{target}/release/jetshop").resolve()
    expect(binary.is_file(), f"no jetshop binary at {binary} (cargo build --release -p jetshop-cli)")
    work = Path(tempfile.mkdtemp(prefix="jetshop-logjoin."))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / "up.log"
    say(f"{binary.name} up --seed-demo --log-format json on {base}")
    up, log = start_up(binary, work, port, "--log-format", "json", drop_env=("RUST_LOG",))
    ok = False
    try:
        wait_ready(up, base)
        mug, _ = demo_product(base)
        email = f"logs-{uuid.uuid4().hex[:12]}@example.com"
        password = f"Logs-{uuid.uuid4().hex}"
        status, _, user = call("POST", f"{base}/v1/users", {"email": email, "password": password, "display_name": "Logs"})
        expect(status == 201, f"POST /v1/users answered {status}: {user}")
        token = pkce_login.access_token(base, email, password, ["orders:read", "orders:write"])
        status, headers, body = call(
            "POST",
            f"{base}/v1/orders",
            {"lines": [{"product_id": mug["id"], "quantity": 1}], "card_token": "tok_visa"},
            token=token,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        expect(status == 202, f"POST /v1/orders answered {status}: {body}")
        url = headers["Location"] if headers["Location"].startswith("http") else base + headers["Location"]
        deadline = time.monotonic() + SETTLE_S
        while True:
            status, _, order = call("GET", url, token=token)
            if status == 200 and order["status"] in ("confirmed", "cancelled"):
                break
            expect(time.monotonic() < deadline, f"order not ended after {SETTLE_S} s")
            time.sleep(0.2)
        expect(order["status"] == "confirmed", f"order ended {order['status']}")
        order_id = order["id"]
        # The confirmation email is sent after the order reads confirmed.
        time.sleep(2)
        up.send_signal(signal.SIGINT)
        expect(up.wait(timeout=60) == 0, "jetshop up did not stop cleanly")
        log.close()

        lines = []
        for raw in log_path.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                lines.append(json.loads(raw))
        expect(lines, "no JSON log lines")
        mine = [line for line in lines if order_of(line) == order_id]
        expect(mine, f"no log line names order {order_id}")
        untraced = [line for line in mine if not line.get("trace_id") or not line.get("span_id")]
        expect(not untraced, f"lines of the order without trace_id/span_id: {untraced[:3]}")
        traces = {line["trace_id"] for line in mine}
        expect(len(traces) == 1, f"order {order_id} is logged under {len(traces)} traces: {sorted(traces)}")
        trace_id = traces.pop()
        parts = {part_of(line) for line in lines if line.get("trace_id") == trace_id} - {None}
        expect(PARTS <= parts, f"trace {trace_id} has lines from {sorted(parts)}; missing {sorted(PARTS - parts)}")
        say(f"order {order_id}: {len(mine)} lines, one trace {trace_id}, with lines from {sorted(parts)}")
        ok = True
        say("log join passed")
        return 0
    except (AssertionError, pkce_login.LoginError, KeyError, json.JSONDecodeError) as e:
        say(f"FAILED: {type(e).__name__}: {e}")
        return 1
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if not log.closed:
            log.close()
        if ok and not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"log kept in {work}")


if __name__ == "__main__":
    sys.exit(main())
