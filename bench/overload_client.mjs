// The Solve overload bench's foreign client in Node (grpc-js loading gateway.proto at run
// time, as the reporter measured). Driven by bench/bench_gateway_overload.py
// (--client node), which installs @grpc/grpc-js and @grpc/proto-loader into a git-ignored
// directory and sets NODE_PATH to it.
//
// Usage: node overload_client.mjs <proto root> <port> <concurrency> <seconds> <seed> <key>
// Prints one JSON line per call: {"deadline_ms", "latency_ms", "code", "server_ms"} (code
// as a gRPC status name; server_ms the answer's elapsed_ms, null for an error). Callers are closed loops on one event loop, like the Python client: 64
// random 12-44-node MaxCut requests built before the clock runs, a 200 ms or 1 s deadline
// (gRPC deadline 2 s longer, so lateness is measured rather than cut off), and after a
// RESOURCE_EXHAUSTED a wait as the retry-after-ms trailer says (jittered, <= 1 s).

import { createRequire } from "node:module";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";

const require = createRequire(import.meta.url);
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [protoRoot, port, concurrency, seconds, seed, key] = process.argv.slice(2);

// A small seeded generator (mulberry32): the runs are repeatable per seed.
function rng(s) {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const definition = protoLoader.loadSync("qbridge/gateway/v1/gateway.proto", {
  includeDirs: [protoRoot],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
});
const api = grpc.loadPackageDefinition(definition).qbridge.gateway.v1;
const stub = new api.Gateway(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
const codeName = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

function request(rand) {
  const n = 12 + Math.floor(rand() * 33);
  const seen = new Set();
  const edges = [];
  for (let i = 0; i < 3 * n; i++) {
    const a = Math.floor(rand() * n);
    const b = Math.floor(rand() * n);
    if (a === b) continue;
    const [u, v] = a < b ? [a, b] : [b, a];
    if (seen.has(`${u},${v}`)) continue;
    seen.add(`${u},${v}`);
    edges.push({ u, v, weight: 1.0 });
  }
  return {
    problem: { maxcut: { num_nodes: n, edges } },
    deadline_ms: rand() < 0.5 ? 200 : 1000,
  };
}

function solve(req) {
  const meta = new grpc.Metadata();
  meta.set("x-api-key", key);
  const deadline = new Date(Date.now() + req.deadline_ms + 2000);
  return new Promise((resolve) => {
    const t0 = performance.now();
    stub.Solve(req, meta, { deadline }, (err, answer) => {
      const ms = performance.now() - t0;
      if (!err) return resolve({ ms, code: "OK", retry: 0, server: answer.elapsed_ms });
      const hint = err.metadata ? err.metadata.get("retry-after-ms") : [];
      resolve({ ms, code: codeName[err.code] || String(err.code), retry: Number(hint[0] || 0) });
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// protobufjs compiles a message's encoder and decoder on first use (tens of ms per type):
// done here, before the clock runs, so no caller's first call measures it.
const method = api.Gateway.service.Solve;
function warmUp(requests) {
  for (const req of requests) method.requestSerialize(req);
  method.responseDeserialize(method.responseSerialize({ job_id: "warm-up", elapsed_ms: 1 }));
}

async function caller(rand, requests, stopAt, out) {
  while (performance.now() < stopAt) {
    const req = requests[Math.floor(rand() * requests.length)];
    const { ms, code, retry, server } = await solve(req);
    out.push({ deadline_ms: req.deadline_ms, latency_ms: ms, code, server_ms: server ?? null });
    if (code === "RESOURCE_EXHAUSTED") {
      await sleep(Math.min(1000, retry) * (0.5 + 0.5 * rand()));
    }
  }
}

await new Promise((resolve, reject) =>
  stub.waitForReady(new Date(Date.now() + 10_000), (err) => (err ? reject(err) : resolve()))
);
const loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();
const callers = Array.from({ length: Number(concurrency) }, (_, i) => {
  const rand = rng(Number(seed) * 1000 + i);
  return { rand, requests: Array.from({ length: 64 }, () => request(rand)) };
});
callers.forEach(({ requests }) => warmUp(requests));
const out = [];
const stopAt = performance.now() + Number(seconds) * 1000;
await Promise.all(callers.map(({ rand, requests }) => caller(rand, requests, stopAt, out)));
loop.disable();
// How long callbacks waited for this process's one thread: client-side delay, not the server's.
process.stderr.write(
  `node event loop delay p50 ${(loop.percentile(50) / 1e6).toFixed(1)} ` +
    `p99 ${(loop.percentile(99) / 1e6).toFixed(1)} max ${(loop.max / 1e6).toFixed(1)} ms\n`
);
process.stdout.write(out.map((r) => JSON.stringify(r)).join("\n") + "\n");
stub.close();
