#!/usr/bin/env python3
"""The dashboards and alerts, proven against a real Prometheus.

`make prometheus-check` (and `make test`, after the smoke) runs it with the
release binary:

 1. `jetshop up --seed-demo` on a free port with a fresh data dir;
 2. a real Prometheus on a free port with the checked-in
    `ops/prometheus/prometheus.yml` and its alert rules; only the target's
    address and the intervals (15 s -> 1 s) are substituted, so that a
    short run has enough samples;
 3. a little checkout load: orders paid with `tok_visa` (confirmed) and
    with declined cards (cancelled, compensated), followed to their end;
 4. through Prometheus's HTTP API:
    - every `jetshop_*` metric it scraped has HELP text;
    - every query of every panel of every dashboard in ops/grafana/dashboards/
      evaluates without error and returns series (a target marked
      `jetshopMayBeEmpty`, with the reason, may return none: failure
      counters on a healthy run);
    - every alert expression evaluates without error, every rule's last
      evaluation is healthy, and none is pending or firing on this healthy
      run;
 5. Ctrl-C to both; nothing left running.

Standard library only. KEEP=1 keeps the logs and data. Usage:
prometheus_check.py [path/to/jetshop]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pkce_login  # noqa: E402
from smoke import SETTLE_S, call, demo_product, expect, free_port, say, start_up, wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
DASHBOARDS = ROOT / "ops" / "grafana" / "dashboards"
# Confirmed and cancelled orders, so that both outcomes, the declines and
# the compensating steps have series.
CARDS = ["tok_visa"] * 6 + ["tok_chargeDeclined", "tok_insufficientFunds"]
# The services' JetStream sampler runs every 5 s; with 1 s scrapes, this
# leaves every sampled gauge scraped more than once after the load.
SETTLE_SCRAPES_S = 12


def prom(base: str, path: str, **params) -> dict:
    """The `data` of a Prometheus API answer; fails on an error status."""
    url = f"{base}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    status, _, body = call("GET", url)
    expect(status == 200 and isinstance(body, dict) and body.get("status") == "success", f"GET {url}: {status} {body}")
    return body["data"]


def scrape_config(address: str) -> str:
    """The checked-in scrape config, aimed at `address` with 1 s intervals."""
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    expect('"127.0.0.1:8080"' in text, "prometheus.yml no longer targets 127.0.0.1:8080; update this check")
    text = text.replace('"127.0.0.1:8080"', f'"{address}"', 1)
    text = re.sub(r"(scrape_interval|evaluation_interval): 15s", r"\1: 1s", text)
    return text


def place_orders(base: str, token: str, product_id: str) -> list[str]:
    urls = []
    for card in CARDS:
        status, headers, body = call(
            "POST",
            f"{base}/v1/orders",
            {"lines": [{"product_id": product_id, "quantity": 1}], "card_token": card},
            token=token,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        expect(status == 202, f"POST /v1/orders ({card}) answered {status}: {body}")
        location = headers["Location"]
        urls.append(location if location.startswith("http") else base + location)
    return urls


def wait_ended(urls: list[str], token: str) -> dict[str, int]:
    ended: dict[str, str] = {}
    deadline = time.monotonic() + SETTLE_S
    while len(ended) < len(urls):
        for url in urls:
            if url in ended:
                continue
            status, _, order = call("GET", url, token=token)
            expect(status in (200, 404), f"GET {url} answered {status}: {order}")
            if status == 200 and order["status"] in ("confirmed", "cancelled"):
                ended[url] = order["status"]
        expect(time.monotonic() < deadline, f"{len(urls) - len(ended)} orders not ended after {SETTLE_S} s")
        time.sleep(0.3)
    counts: dict[str, int] = {}
    for s in ended.values():
        counts[s] = counts.get(s, 0) + 1
    return counts


def check_help(pbase: str) -> int:
    metadata = prom(pbase, "/api/v1/metadata")
    names = prom(pbase, "/api/v1/label/__name__/values")
    ours = sorted(n for n in names if n.startswith("jetshop_"))
    expect(ours, "Prometheus scraped no jetshop_* metric")
    missing = []
    for name in ours:
        # Histograms are listed under their base name, their series as _bucket/_sum/_count.
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        entries = metadata.get(name) or metadata.get(base) or []
        if not any(e.get("help") for e in entries):
            missing.append(name)
    expect(not missing, f"metrics without HELP text: {missing}")
    return len(ours)


def check_dashboards(pbase: str) -> tuple[int, int]:
    files = sorted(DASHBOARDS.glob("*.json"))
    expect(files, f"no dashboards in {DASHBOARDS}")
    failures, queries, empty_allowed = [], 0, 0
    for path in files:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                queries += 1
                where = f"{path.name} / {panel['title']} / {target['refId']}"
                status, _, body = call("GET", f"{pbase}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
                if status != 200 or body.get("status") != "success":
                    failures.append(f"{where}: error {status} {body}")
                elif not body["data"]["result"]:
                    if target.get("jetshopMayBeEmpty"):
                        empty_allowed += 1
                    else:
                        failures.append(f"{where}: no series for {expr}")
    expect(not failures, "dashboard queries failing:\n  " + "\n  ".join(failures))
    return queries, empty_allowed


def check_alerts(pbase: str) -> int:
    groups = prom(pbase, "/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    on_disk = sum(len(re.findall(r"^\s*- alert:", p.read_text(), re.M)) for p in (PROMETHEUS_DIR / "alerts").glob("*.rules.yml"))
    alerts = [r for r in rules if r["type"] == "alerting"]
    expect(len(alerts) == on_disk, f"Prometheus loaded {len(alerts)} alerts, the rule files have {on_disk}")
    failures = []
    for rule in alerts:
        status, _, body = call("GET", f"{pbase}/api/v1/query?" + urllib.parse.urlencode({"query": rule["query"]}))
        if status != 200 or body.get("status") != "success":
            failures.append(f"{rule['name']}: error {status} {body}")
        if rule.get("health") != "ok":
            failures.append(f"{rule['name']}: health {rule.get('health')}: {rule.get('lastError')}")
        if rule.get("state") != "inactive":
            failures.append(f"{rule['name']}: {rule.get('state')} on a healthy run: {rule.get('alerts')}")
    expect(not failures, "alert rules failing:\n  " + "\n  ".join(failures))
    return len(alerts)


def stop(proc: subprocess.Popen, what: str) -> None:
    proc.send_signal(signal.SIGINT if what == "jetshop up" else signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{what} still running 60 s after it was told to stop")
    expect(code == 0, f"{what} exited with {code}")


def main() -> int:
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    binary = Path(sys.argv[1] if len(sys.argv) > 1 else f"{target}/release/jetshop").resolve()
    expect(binary.is_file(), f"no jetshop binary at {binary} (cargo build --release -p jetshop-cli)")
    prometheus = shutil.which("prometheus")
    expect(prometheus is not None, "no prometheus on PATH (make prometheus installs Debian's)")

    work = Path(tempfile.mkdtemp(prefix="jetshop-prometheus."))
    port, pport = free_port(), free_port()
    base, pbase = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{pport}"
    prom_log = open(work / "prometheus.log", "wb")
    say(f"{binary.name} up --seed-demo on {base}")
    up, up_log = start_up(binary, work, port)
    # The rule files are found relative to the config file, as in the repo.
    (work / "prometheus.yml").write_text(scrape_config(f"127.0.0.1:{port}"))
    shutil.copytree(PROMETHEUS_DIR / "alerts", work / "alerts")
    say(f"prometheus on {pbase} with ops/prometheus/prometheus.yml")
    server = subprocess.Popen(
        [prometheus, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{pport}"],
        stdout=prom_log,
        stderr=subprocess.STDOUT,
    )
    ok = False
    try:
        wait_ready(up, base, also=(("prometheus", server),))
        mug, _ = demo_product(base)
        # A read of the product itself, so the catalog's cache counts, and
        # of one that does not exist, so the HTTP errors panel has a 404.
        call("GET", f"{base}/v1/products/{mug['id']}")
        status = call("GET", f"{base}/v1/products/{uuid.uuid4()}")[0]
        expect(status == 404, f"GET of an unknown product answered {status}")

        email = f"prom-{uuid.uuid4().hex[:12]}@example.com"
        password = f"Prom-{uuid.uuid4().hex}"
        status, _, user = call("POST", f"{base}/v1/users", {"email": email, "password": password, "display_name": "Prom"})
        expect(status == 201, f"POST /v1/users answered {status}: {user}")
        token = pkce_login.access_token(base, email, password, ["orders:read", "orders:write"])
        urls = place_orders(base, token, mug["id"])
        counts = wait_ended(urls, token)
        say(f"{len(urls)} orders ended: {counts}")
        expect(counts.get("confirmed", 0) == CARDS.count("tok_visa"), f"not every tok_visa order confirmed: {counts}")

        deadline = time.monotonic() + 30
        while True:
            targets = prom(pbase, "/api/v1/targets")["activeTargets"]
            if targets and all(t["health"] == "up" for t in targets):
                break
            expect(time.monotonic() < deadline, f"targets not up: {targets}")
            time.sleep(0.5)
        time.sleep(SETTLE_SCRAPES_S)

        say(f"{check_help(pbase)} jetshop metrics scraped, each with HELP text")
        queries, allowed = check_dashboards(pbase)
        say(f"{queries} panel queries evaluated, all with series ({allowed} failure-only queries empty, as allowed)")
        say(f"{check_alerts(pbase)} alert expressions evaluated: healthy, none pending or firing")

        stop(server, "prometheus")
        stop(up, "jetshop up")
        ok = True
        say("prometheus check passed")
        return 0
    except (AssertionError, pkce_login.LoginError, KeyError, TypeError) as e:
        say(f"FAILED: {type(e).__name__}: {e}")
        return 1
    finally:
        for proc in (up, server):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        up_log.close()
        prom_log.close()
        if ok and not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            if not ok:
                for name in ("up.log", "prometheus.log"):
                    tail = (work / name).read_text(errors="replace").splitlines()[-12:]
                    print(f"--- {name}\n" + "\n".join(tail), file=sys.stderr)
            say(f"logs and data kept in {work}")


if __name__ == "__main__":
    sys.exit(main())
