// Responsiveness under load (a measurement, not a test with a timed assertion): while a
// training job keeps every core busy, how fast do the page and the API answer?
//
//   DISTILL_BIN=target/debug/distill node tests/studio-e2e/load.mjs [seconds]
//
// Prints the median, 95th percentile and maximum latency per request kind.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = process.env.DISTILL_BIN || join(repo, 'target/debug/distill');
const seconds = Number(process.argv[2] || 30);

function tone(i, secs, rate = 44100) {
  const n = Math.floor(secs * rate);
  const b = Buffer.alloc(44 + n * 2);
  b.write('RIFF', 0); b.writeUInt32LE(36 + n * 2, 4); b.write('WAVEfmt ', 8); b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22); b.writeUInt32LE(rate, 24); b.writeUInt32LE(rate * 2, 28);
  b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34); b.write('data', 36); b.writeUInt32LE(n * 2, 40);
  for (let s = 0; s < n; s++) {
    const t = s / rate;
    b.writeInt16LE(Math.round(Math.sin(2 * Math.PI * 70 * (1 + i * 0.3) * t) * Math.exp(-t * 3) * 12000), 44 + s * 2);
  }
  return b;
}

const tmp = mkdtempSync(join(tmpdir(), 'distill-load-'));
const data = join(tmp, 'data', 'sounds');
mkdirSync(data, { recursive: true });
for (let i = 0; i < 12; i++) writeFileSync(join(data, `s${i}.wav`), tone(i, 1.5 + (i % 3)));
const server = spawn(bin, ['studio', '--models', join(tmp, 'models'), '--port', '0', '--data-root', join(tmp, 'data')], { stdio: ['ignore', 'pipe', 'inherit'] });
try {
  const url = await new Promise((ok, fail) => {
    let out = '';
    server.stdout.on('data', (d) => { out += d; const m = out.match(/distill studio: (http:\/\/\S+)/); if (m) ok(m[1]); });
    setTimeout(() => fail(new Error('no URL')), 30000);
  });
  const u = new URL(url);
  const token = u.searchParams.get('token');
  const headers = { 'x-distill-token': token };
  const call = (path, init = {}) => fetch(u.origin + path, { ...init, headers: { ...headers, ...(init.headers || {}) } });
  const r = await call('/api/jobs/train', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data, name: 'load', epochs: 200, seed: 1 }) });
  if (!r.ok) throw new Error(await r.text());
  const { job } = await r.json();
  // Wait until the first epoch is done: the job is then in its steady, CPU-bound state.
  for (;;) {
    const j = await (await call(`/api/jobs/${job}`)).json();
    if (j.events.some((e) => e.event === 'epoch')) break;
    if (j.state !== 'running' && j.state !== 'queued') throw new Error(`the job ended: ${j.error}`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
  const kinds = { 'page /': '/', 'GET /api/state': '/api/state', 'GET /api/jobs': '/api/jobs', 'GET /api/models': '/api/models', [`GET /api/jobs/${job}`]: `/api/jobs/${job}` };
  const times = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]));
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    for (const [k, path] of Object.entries(kinds)) {
      const t0 = performance.now();
      const res = await call(path);
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`${path}: ${res.status}`);
      times[k].push(performance.now() - t0);
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  const j = await (await call(`/api/jobs/${job}`)).json();
  const epochs = j.events.filter((e) => e.event === 'epoch').length;
  await call(`/api/jobs/${job}/cancel`, { method: 'POST' });
  console.log(`${cpus().length} cores; training ran ${epochs} epochs during ${seconds} s of requests`);
  const q = (v, p) => v.slice().sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(p * v.length))];
  for (const [k, v] of Object.entries(times)) {
    console.log(`${k.padEnd(22)} n=${String(v.length).padStart(4)}  median ${q(v, 0.5).toFixed(1).padStart(6)} ms  p95 ${q(v, 0.95).toFixed(1).padStart(6)} ms  max ${Math.max(...v).toFixed(1).padStart(6)} ms`);
  }
} finally {
  server.kill('SIGTERM');
  rmSync(tmp, { recursive: true, force: true });
}
