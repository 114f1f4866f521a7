// node-redis (npm "redis", pinned in package.json) against a running
// luacached: RESP2 and RESP3 connections, a client pool, pipelines,
// transactions (multi), binary values and SET options.
// Usage: node clients_test.js PORT. Prints "ok: N checks" and exits 0, or
// prints the first failure and exits 1.
"use strict";
const { createClient, createClientPool, RESP_TYPES } = require("redis");
const assert = require("assert");

let checks = 0;
function eq(got, want, what) {
  assert.deepStrictEqual(got, want, what);
  checks++;
}
function ok(cond, what) {
  assert.ok(cond, what);
  checks++;
}

async function run(port, resp) {
  const url = `redis://127.0.0.1:${port}`;
  const c = createClient({ url, RESP: resp, socket: { connectTimeout: 5000, reconnectStrategy: false } });
  c.on("error", () => {}); // failures surface on the commands
  await c.connect();
  const tag = `r${resp}`;
  eq(await c.ping(), "PONG", `${tag} PING`);
  eq(await c.set(`widget:${tag}a`, "v1"), "OK", `${tag} SET`);
  eq(await c.get(`widget:${tag}a`), "v1", `${tag} GET`);
  eq(await c.get(`widget:missing-${tag}`), null, `${tag} GET of a not-found id`);
  eq(await c.set(`widget:${tag}a`, "v2", { condition: "NX" }), null, `${tag} SET NX`);
  eq(await c.set(`widget:${tag}a`, "v2", { GET: true }), "v1", `${tag} SET GET`);
  eq(await c.exists([`widget:${tag}a`, `widget:${tag}-none`]), 1, `${tag} EXISTS`);
  if (resp === 3) {
    const hello = await c.hello(3);
    ok(hello.proto === 3 || (hello instanceof Map && hello.get("proto") === 3), `HELLO 3 proto: ${JSON.stringify(hello)}`);
    const peek = await c.sendCommand(["PEEK", `widget:${tag}a`]);
    const state = peek instanceof Map ? peek.get("state") : peek.state;
    eq(state, "fresh", "PEEK state as a RESP3 map");
    const pol = await c.sendCommand(["POLICIES"]);
    const w = pol instanceof Map ? pol.get("widget") : pol.widget;
    const ttl = w instanceof Map ? w.get("ttl") : w.ttl;
    eq(ttl, 60, "POLICIES ttl as a RESP3 double");
  }

  // binary: every byte value and 1 MB, as Buffers
  const bc = c.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  eq(await bc.set(`widget:${tag}bin`, all), "OK", `${tag} SET 256 bytes`);
  ok(all.equals(await bc.get(`widget:${tag}bin`)), `${tag} GET 256 bytes`);
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 255;
  eq(await bc.set(`widget:${tag}big`, big), "OK", `${tag} SET 1 MB`);
  ok(big.equals(await bc.get(`widget:${tag}big`)), `${tag} GET 1 MB`);

  // a pipeline (no MULTI) and a transaction (MULTI/EXEC)
  let m = c.multi();
  for (let i = 0; i < 50; i++) m = m.set(`widget:${tag}p${i}`, `p${i}`).get(`widget:${tag}p${i}`);
  const piped = await m.execAsPipeline();
  eq(piped.length, 100, `${tag} pipeline replies`);
  ok(piped.every((v, i) => v === (i % 2 ? `p${(i - 1) / 2}` : "OK")), `${tag} pipeline order`);
  const tx = await c.multi().set(`widget:${tag}tx`, "a").get(`widget:${tag}tx`)
    .get(`widget:${tag}-fetched`).exists(`widget:${tag}tx`).exec();
  eq(tx[0], "OK", `${tag} EXEC SET`);
  eq(tx[1], "a", `${tag} EXEC GET`);
  ok(typeof tx[2] === "string" && tx[2].includes(`${tag}-fetched`), `${tag} EXEC fill: ${tx[2]}`);
  eq(tx[3], 1, `${tag} EXEC EXISTS`);
  await c.quit();
}

async function pool(port) {
  const p = createClientPool({ url: `redis://127.0.0.1:${port}`, RESP: 3 }, { minimum: 1, maximum: 4 });
  p.on("error", () => {});
  await p.connect();
  const jobs = [];
  for (let n = 0; n < 40; n++) {
    jobs.push((async () => {
      await p.set(`widget:pool${n}`, `v${n}`);
      return p.get(`widget:pool${n}`);
    })());
  }
  const got = await Promise.all(jobs);
  eq(got, Array.from({ length: 40 }, (_, n) => `v${n}`), "pool replies");
  const tx = await p.execute((c) => c.multi().set("widget:pooltx", "t").get("widget:pooltx").exec());
  eq(tx, ["OK", "t"], "pool transaction");
  await p.close();
}

(async () => {
  const port = Number(process.argv[2]);
  await run(port, 2);
  await run(port, 3);
  await pool(port);
  console.log(`ok: ${checks} checks`);
  process.exit(0);
})().catch((e) => {
  console.log(`FAILED: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
