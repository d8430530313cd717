// A browsing scenario against a running jetshop, with thresholds. The
// default rate limit (120 anonymous requests per 60 s per address) is for
// the internet, not for a load generator on one address: start jetshop
// with a load-test budget, or nearly every check is a 429:
//   JETSHOP_RATE_LIMIT="default=1000000/60s,auth=1000000/60s,writes=1000000/60s" make up
//   k6 run loadtests/k6/products.js                  # gateway at 127.0.0.1:8080
//   k6 run -e BASE_URL=http://host:8080 loadtests/k6/products.js
// Shoppers list the catalog, page through it, filter it and open products;
// a few ask for products that do not exist (404 is the expected answer).
// Not part of `make test`: it is a benchmark, not a timed test.
import http from "k6/http";
import { check, sleep } from "k6";
import { Rate, Trend } from "k6/metrics";

const BASE = __ENV.BASE_URL || "http://127.0.0.1:8080";
const problems = new Rate("unexpected_responses");
const productLatency = new Trend("product_get_duration", true);

export const options = {
  scenarios: {
    browse: {
      executor: "ramping-vus",
      startVUs: 1,
      stages: [
        { duration: "10s", target: 50 },
        { duration: "40s", target: 50 },
        { duration: "10s", target: 0 },
      ],
    },
    spike: {
      executor: "constant-arrival-rate",
      rate: 500,
      timeUnit: "1s",
      duration: "20s",
      startTime: "20s",
      preAllocatedVUs: 50,
      maxVUs: 200,
      exec: "openProduct",
    },
  },
  thresholds: {
    http_req_failed: ["rate<0.01"],
    unexpected_responses: ["rate<0.001"],
    "http_req_duration{name:list}": ["p(95)<100", "p(99)<250"],
    product_get_duration: ["p(95)<50", "p(99)<150"],
  },
};

export function setup() {
  const res = http.get(`${BASE}/v1/products?limit=100`);
  const ids = (res.body.match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g) || []);
  if (ids.length === 0) {
    throw new Error(`no products at ${BASE}/v1/products: start jetshop with --seed-demo`);
  }
  // A budget this scenario would use up in seconds measures the limiter,
  // not the shop: say how to start jetshop for a load test instead.
  const limit = Number(res.headers["Ratelimit-Limit"] || res.headers["RateLimit-Limit"] || 0);
  if (limit > 0 && limit < 100000) {
    throw new Error(
      `the gateway allows ${limit} requests per window to this address; start it with ` +
        `JETSHOP_RATE_LIMIT="default=1000000/60s,auth=1000000/60s,writes=1000000/60s" (see the header of this file)`,
    );
  }
  return { ids: [...new Set(ids)] };
}

export function openProduct(data) {
  const id = data.ids[Math.floor(Math.random() * data.ids.length)];
  const res = http.get(`${BASE}/v1/products/${id}`, { tags: { name: "get" } });
  productLatency.add(res.timings.duration);
  problems.add(!check(res, { "product 200": (r) => r.status === 200 }));
}

export default function (data) {
  const list = http.get(`${BASE}/v1/products?limit=5`, { tags: { name: "list" } });
  problems.add(!check(list, { "list 200": (r) => r.status === 200 }));
  const filtered = http.get(`${BASE}/v1/products?q=mug`, { tags: { name: "list" } });
  problems.add(!check(filtered, { "filter 200": (r) => r.status === 200 }));
  openProduct(data);
  const missing = http.get(`${BASE}/v1/products/00000000-0000-7000-8000-000000000000`, {
    tags: { name: "missing" },
    responseCallback: http.expectedStatuses(404),
  });
  problems.add(!check(missing, { "missing 404 problem+json": (r) => r.status === 404 }));
  sleep(0.2);
}
