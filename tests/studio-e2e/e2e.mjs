// Browser end-to-end test of `distill studio` in Debian's Chromium (playwright-core, no
// browser download). Starts the already-built binary (DISTILL_BIN) on a random port with a
// temporary models folder and a tiny synthetic corpus it writes itself, then walks the four
// tabs like a musician would, and saves a screenshot of each tab in docs/.
//
//   DISTILL_BIN=target/debug/distill node tests/studio-e2e/e2e.mjs
//
// E2E_EPOCHS sets the epochs of both stages (default 30; the README's screenshots: 60).

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, rmSync, readdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const docs = join(repo, 'docs');
const bin = process.env.DISTILL_BIN || join(repo, 'target/debug/distill');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const started = Date.now();
// Epochs of both stages: the tier's model sizes, trained briefly.
const EPOCHS = Number(process.env.E2E_EPOCHS || 30);
const log = (...a) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s]`, ...a);

/** A mono 16-bit WAV: a decaying tone with a noise burst, like a drum hit. */
function hit(i, seconds, rate = 44100) {
  const n = Math.floor(seconds * rate);
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + n * 2, 4); buf.write('WAVE', 8);
  buf.write('fmt ', 12); buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24); buf.writeUInt32LE(rate * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34);
  buf.write('data', 36); buf.writeUInt32LE(n * 2, 40);
  let seed = 12345 + i;
  const f = 90 * (1 + i * 0.45);
  for (let s = 0; s < n; s++) {
    const t = s / rate;
    seed = (seed * 1664525 + 1013904223) >>> 0;
    const noise = seed / 2 ** 32 - 0.5;
    const v = Math.sin(2 * Math.PI * f * t) * Math.exp(-t * 5) + noise * Math.exp(-t * 35);
    buf.writeInt16LE(Math.max(-32767, Math.min(32767, Math.round(v * 12000))), 44 + s * 2);
  }
  return buf;
}

const tmp = mkdtempSync(join(tmpdir(), 'distill-e2e-'));
const dataRoot = join(tmp, 'sounds');
const corpus = join(dataRoot, 'tiny-drums');
const models = join(tmp, 'models');
mkdirSync(corpus, { recursive: true });
// A model of the original system in the models folder: the Library lists it too.
mkdirSync(models, { recursive: true });
copyFileSync(join(repo, 'tests/fixtures/upstream-drums20/model.distill'), join(models, 'upstream-drums20.distill'));
for (let i = 0; i < 8; i++) writeFileSync(join(corpus, `hit${i}.wav`), hit(i, 0.9 + 0.25 * i));
writeFileSync(join(tmp, 'upload-kick.wav'), hit(7, 0.6));
writeFileSync(join(tmp, 'readme.txt'), 'these are not sounds\n'.repeat(20));
mkdirSync(docs, { recursive: true });

let server;
let browser;
async function main() {
  assert.ok(existsSync(bin), `the distill binary is missing at ${bin}: cargo build first`);
  assert.ok(existsSync(executablePath), `Chromium is missing at ${executablePath}: apt-get install chromium`);
  server = spawn(bin, ['studio', '--models', models, '--port', '0', '--data-root', dataRoot], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((ok, fail) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/distill studio: (http:\/\/\S+)/);
      if (m) ok(m[1]);
    });
    server.on('exit', (code) => fail(new Error(`distill studio exited (${code})`)));
    setTimeout(() => fail(new Error('distill studio printed no URL')), 30000);
  });
  log('studio at', url.replace(/token=\w+/, 'token=…'));
  const origin = new URL(url).origin;

  browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const pageErrors = [];
  context.on('weberror', (e) => pageErrors.push(e.error().message));
  const shoot = async (name) => {
    await page.evaluate(() => { document.getElementById('toast').className = ''; });
    await page.waitForTimeout(250);
    await page.screenshot({ path: join(docs, name), fullPage: true });
  };
  const points = (p, stage) => p.$eval(`#chart-${stage}`, (c) => Number(c.dataset.points));

  // Without the token the page explains itself and the API refuses.
  await page.goto(origin + '/');
  await page.waitForSelector('#no-token:not([hidden])');
  const refused = await page.evaluate(async () => (await fetch('/api/state')).status);
  assert.equal(refused, 401);

  // Data: upload a sound and a text file (refused with a clear message), then pick the corpus.
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]');
  await page.fill('#upload-name', 'first upload');
  await page.setInputFiles('#upload-input', [join(tmp, 'upload-kick.wav'), join(tmp, 'readme.txt')]);
  await page.waitForFunction(() => document.querySelectorAll('#upload-log li').length === 2 && !document.querySelector('#upload-log .hint'));
  const uploadLog = await page.$$eval('#upload-log li', (li) => li.map((l) => l.textContent));
  assert.match(uploadLog[0], /upload-kick\.wav: pcm_s16le/);
  assert.match(uploadLog[1], /readme\.txt: readme\.txt is not an audio file/);
  log('uploads:', uploadLog.join(' | '));
  await page.fill('#data-path', corpus);
  await page.click('#data-scan');
  await page.waitForSelector('#scan-result:not([hidden])');
  await page.waitForFunction((p) => document.querySelector('#scan-root').textContent === p, corpus);
  assert.equal(await page.$$eval('#scan-table tbody tr', (r) => r.length), 8);
  assert.match(await page.textContent('#scan-tier'), /small collection/);
  await shoot('studio-data.png');
  log('scanned the corpus');

  // Train: tiny settings, live curves over SSE, reload and a second tab mid-run, cancel, resume.
  await page.click('#scan-use');
  await page.waitForSelector('#tab-train:not([hidden])');
  assert.equal(await page.inputValue('#train-data'), corpus);
  await page.fill('#train-name', 'e2e-drums');
  for (const [id, v] of [['#train-epochs', String(EPOCHS)], ['#train-seed', '5']]) await page.fill(id, v);
  await page.click('#train-start');
  await page.waitForFunction(() => Number(document.querySelector('#chart-vqvae').dataset.points) >= 1, null, { timeout: 120000 });
  const first = await points(page, 'vqvae');
  await page.waitForFunction((n) => Number(document.querySelector('#chart-vqvae').dataset.points) > n, first, { timeout: 60000 });
  log(`VQ-VAE points arrive live: ${first} → ${await points(page, 'vqvae')}`);

  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  const before = await points(page, 'vqvae');
  await page.waitForFunction(() => Number(document.querySelector('#chart-vqvae').dataset.points) >= 2);
  const afterReload = await points(page, 'vqvae');
  assert.ok(afterReload >= 2, 'the chart continues after a reload');
  const second = await context.newPage();
  await second.goto(url.replace(/#.*$/, '') + '#train');
  await second.waitForFunction(() => Number(document.querySelector('#chart-vqvae').dataset.points) >= 2);
  log(`after reload the chart has ${afterReload} points (${before} at first paint); a second tab has ${await points(second, 'vqvae')}`);
  await second.close();

  await page.click('#run-cancel');
  await page.waitForFunction(() => document.querySelector('#run-state').textContent === 'cancelled', null, { timeout: 60000 });
  const cancelledAt = { vqvae: await points(page, 'vqvae'), prior: await points(page, 'prior') };
  assert.ok(existsSync(join(models, 'e2e-drums.distill.ckpt', 'checkpoint.json')), 'cancelling keeps the checkpoint');
  log('cancelled at', cancelledAt);
  await page.click('#run-resume');
  await page.waitForFunction(() => document.querySelector('#run-state').textContent === 'running', null, { timeout: 60000 });
  await page.waitForFunction(() => Number(document.querySelector('#chart-prior').dataset.points) >= 2, null, { timeout: 300000 });
  const midPrior = await points(page, 'prior');
  await page.waitForFunction(() => document.querySelector('#run-state').textContent === 'finished', null, { timeout: 300000 });
  assert.equal(await points(page, 'vqvae'), EPOCHS);
  assert.equal(await points(page, 'prior'), EPOCHS);
  assert.ok(midPrior < EPOCHS || cancelledAt.prior > 0, 'prior points arrived while the page watched');
  assert.match(await page.textContent('#run-health'), /Codebook: (healthy|some codes unused|collapse)/);
  await page.waitForSelector('#run-previews audio');
  await shoot('studio-train.png');
  log('training finished after a resume; both charts full');

  // Generate 2 sounds; a player loads one; its decoded duration is the requested one; download.
  await page.click('nav [data-tab="generate"]');
  await page.waitForFunction(() => [...document.querySelectorAll('#gen-model option')].some((o) => o.value === 'e2e-drums.distill'));
  await page.selectOption('#gen-model', 'e2e-drums.distill');
  await page.fill('#gen-duration', '1.5');
  await page.fill('#gen-count', '2');
  await page.fill('#gen-seed', '7');
  await page.check('#gen-lock');
  await page.fill('#gen-iterations', '8');
  await page.click('#gen-start');
  await page.waitForFunction(() => document.querySelectorAll('#results .result').length === 2, null, { timeout: 120000 });
  const audioInfo = await page.$eval('#results .result audio', async (a) => {
    if (a.readyState < 1) await new Promise((ok, fail) => { a.onloadedmetadata = ok; a.onerror = () => fail(new Error(`audio error ${a.error?.code}: ${a.error?.message} (${a.src})`)); a.load(); });
    const buf = await (await fetch(a.src)).arrayBuffer();
    const decoded = await new OfflineAudioContext(1, 1, 48000).decodeAudioData(buf);
    return { element: a.duration, decoded: decoded.duration, rate: decoded.sampleRate, src: a.getAttribute('src') };
  });
  log('audio element:', audioInfo.element, 's; decoded:', audioInfo.decoded, 's');
  assert.ok(Math.abs(audioInfo.decoded - 1.5) < 1e-6, `decoded duration ${audioInfo.decoded} ≠ 1.5 s`);
  assert.ok(Math.abs(audioInfo.element - 1.5) < 1e-3, `player duration ${audioInfo.element} ≠ 1.5 s`);
  const [, job, seed] = audioInfo.src.match(/results\/(\d+)\/(\d+)\//);
  await page.keyboard.press('1');
  await page.waitForFunction(() => !document.querySelector('#results .result audio').paused);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('#results .result a:text("WAV")'),
  ]);
  const downloaded = readFileSync(await download.path());
  const onServer = readFileSync(join(models, 'generated', job, `gen_${seed}.wav`));
  assert.ok(downloaded.equals(onServer), 'the downloaded bytes equal the server file');
  log(`downloaded ${download.suggestedFilename()} (${downloaded.length} bytes) = the server's file`);
  await page.click('#results .result button:text("keep")');
  await page.waitForSelector('#results .result button.kept');
  await page.fill('#kit-name', 'e2e kit');
  await page.click('#kit-export');
  await page.waitForSelector('#kit-result a');
  assert.ok(existsSync(join(models, 'kits', 'e2e kit.zip')));
  await page.waitForFunction(() => [...document.querySelectorAll('#results img.mel')].every((i) => i.complete && i.naturalWidth > 0));
  await shoot('studio-generate.png');
  log('generated, auditioned, downloaded, kept and exported a kit');

  // Library: the model is a card; delete it (with confirmation).
  await page.click('nav [data-tab="library"]');
  const card = '#models .card[data-file="e2e-drums.distill"]';
  await page.waitForSelector(card);
  assert.match(await page.textContent(card), /prior ✓/);
  assert.match(await page.textContent('#models .card[data-file="upstream-drums20.distill"]'), /reference system file/);
  await shoot('studio-library.png');
  await page.click(`${card} button.danger`);
  await page.waitForSelector('#confirm[open]');
  await page.click('#confirm-ok');
  await page.waitForSelector(card, { state: 'detached' });
  assert.ok(!existsSync(join(models, 'e2e-drums.distill')), 'the model file is deleted');
  log('deleted the model from the Library');
  assert.deepEqual(readdirSync(models).filter((f) => f.endsWith('.distill')), ['upstream-drums20.distill']);
  assert.deepEqual(pageErrors, [], 'no script errors in the page');
}

try {
  await main();
  log('studio e2e: all steps passed; screenshots in docs/');
} catch (e) {
  console.error('studio e2e FAILED:', e);
  process.exitCode = 1;
} finally {
  await browser?.close().catch(() => {});
  server?.kill('SIGTERM');
  rmSync(tmp, { recursive: true, force: true });
}
