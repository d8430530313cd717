// Constant load on one URL, for bench.sh when wrk is not available:
//   k6 run -e URL=http://127.0.0.1:8080/v1/products/<id> -e VUS=64 -e DURATION=15s loadtests/k6/fixed-url.js
// Every VU loops without pause, like a wrk connection.
import http from "k6/http";
import { check } from "k6";

export const options = {
  vus: Number(__ENV.VUS || 64),
  duration: __ENV.DURATION || "15s",
  discardResponseBodies: true,
};

export default function () {
  const res = http.get(__ENV.URL);
  check(res, { "status is 200": (r) => r.status === 200 });
}
