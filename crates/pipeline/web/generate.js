// The Generate tab: settings, a generation job's progress, and the results grid (players
// with waveform and mel thumbnails, parameters, regenerate / keep / download), keys 1–9.

import { $, el, get, post, url, toast, seconds, on, emit } from './api.js';
import { waveform } from './chart.js';

let results = [];
let source = null;

export function init() {
  $('gen-start').addEventListener('click', () => generate(settings()));
  $('kit-export').addEventListener('click', exportKit);
  on('model-trained', (file) => loadModels(file));
  on('open-model', (file) => loadModels(file));
  document.addEventListener('keydown', (e) => {
    if (document.body.dataset.view !== 'generate' || /INPUT|SELECT|TEXTAREA/.test(e.target.tagName)) return;
    if (e.key >= '1' && e.key <= '9') play(Number(e.key) - 1);
  });
  loadModels();
  loadResults();
}

export function shown() {
  loadModels($('gen-model').value || undefined);
}

async function loadModels(select) {
  try {
    const { models } = await get('/api/models');
    const s = $('gen-model');
    const keep = select || s.value;
    s.replaceChildren(...models.filter((m) => m.has_prior).map((m) => el('option', { value: m.file }, m.name)));
    if (!s.options.length) s.append(el('option', { value: '' }, 'no model with a prior yet — train one'));
    if (keep && [...s.options].some((o) => o.value === keep)) s.value = keep;
  } catch (e) { toast(e.message, 'error'); }
}

function settings() {
  const n = (id) => Number($(id).value);
  let seed = $('gen-seed').value.trim();
  if (!$('gen-lock').checked || seed === '') {
    seed = String(Math.floor(Math.random() * 2 ** 31));
    $('gen-seed').value = seed;
  }
  return {
    model: $('gen-model').value, duration: n('gen-duration'), count: n('gen-count'), seed,
    temperature: n('gen-temperature'), top_k: n('gen-topk'), top_p: n('gen-topp'), iterations: n('gen-iterations'),
    candidates: n('gen-candidates'), exact_duration: $('gen-exact').checked,
  };
}

export async function generate(body) {
  if (!body.model) { toast('Choose a model with a prior first', 'error'); return; }
  try {
    const r = await post('/api/jobs/generate', body);
    emit('jobs-changed');
    follow(r.job);
  } catch (e) { toast(e.message, 'error'); }
}

function follow(id) {
  if (source) source.close();
  const bar = $('gen-progress');
  bar.hidden = false; bar.value = 0;
  $('gen-status').textContent = 'waiting in the queue…';
  source = new EventSource(url(`/api/jobs/${id}/events`));
  source.onmessage = (m) => {
    const e = JSON.parse(m.data);
    if (e.event === 'progress') { bar.max = e.total; bar.value = e.done; $('gen-status').textContent = 'generating…'; }
    if (e.event === 'job' && e.state === 'running') $('gen-status').textContent = 'generating…';
    if (e.event === 'sound') { results.unshift(e.result); renderResults(); }
    if (e.event === 'job' && e.error) toast(e.error, 'error');
    if (e.event === 'job' && ['finished', 'failed', 'cancelled'].includes(e.state)) $('gen-status').textContent = e.state === 'finished' ? 'done' : e.state;
  };
  source.addEventListener('end', () => { source.close(); source = null; bar.hidden = true; emit('jobs-changed'); });
}

async function loadResults() {
  try {
    results = (await get('/api/results')).results;
    renderResults();
  } catch (e) { toast(e.message, 'error'); }
}

function renderResults() {
  const box = $('results');
  box.replaceChildren(...results.map((r, i) => card(r, i)));
}

function card(r, i) {
  const wav = url(`/api/results/${r.job}/${r.seed}/audio.wav`);
  const audio = el('audio', { controls: true, preload: 'metadata', src: wav, dataset: { duration: r.duration_s } });
  const wave = el('canvas', { class: 'wave', width: 300, height: 56 });
  drawWave(wave, wav);
  const keep = el('button', { class: r.kept ? 'kept' : 'secondary', onclick: async () => {
    try {
      await post(`/api/results/${r.job}/${r.seed}/keep`, { kept: !r.kept });
      r.kept = !r.kept;
      renderResults();
    } catch (e) { toast(e.message, 'error'); }
  } }, r.kept ? '★ kept' : '☆ keep');
  return el('article', { class: 'result', dataset: { id: r.id, index: i + 1 } },
    el('div', { class: 'row' }, el('b', { class: 'num' }, i < 9 ? String(i + 1) : ''), el('span', { class: 'grow path' }, r.model), el('span', { class: 'hint' }, `job ${r.job}`)),
    wave,
    el('img', { class: 'mel', src: url(`/api/results/${r.job}/${r.seed}/mel.png`), alt: 'mel spectrogram', loading: 'lazy' }),
    audio,
    el('p', { class: 'params' }, `${seconds(r.duration_s)} · seed ${r.seed} · temperature ${r.temperature} · top-k ${r.top_k} · top-p ${r.top_p} · ${r.iterations} iterations${r.candidates > 1 ? ` · best of ${r.candidates}` : ''}`),
    el('div', { class: 'row' },
      el('button', { class: 'secondary', title: 'make this exact sound again', onclick: () => generate({ model: r.model, duration: r.requested_duration_s ?? r.duration_s, exact_duration: r.exact_duration, count: 1, seed: r.seed, temperature: r.temperature, top_k: r.top_k, top_p: r.top_p, iterations: r.iterations, candidates: r.candidates }) }, '↻ again'),
      keep,
      el('a', { class: 'button secondary', href: url(`/api/results/${r.job}/${r.seed}/audio.wav`, { download: 1 }), download: `distill_${r.job}_${r.seed}.wav` }, 'WAV'),
      el('a', { class: 'button secondary', href: url(`/api/results/${r.job}/${r.seed}/audio.flac`), download: `distill_${r.job}_${r.seed}.flac` }, 'FLAC')));
}

async function drawWave(canvas, src) {
  try {
    const buf = await (await fetch(src)).arrayBuffer();
    const ctx = new OfflineAudioContext(1, 1, 48000);
    const audio = await ctx.decodeAudioData(buf);
    waveform(canvas, audio.getChannelData(0));
  } catch { /* the player still works */ }
}

function play(i) {
  const cards = document.querySelectorAll('#results .result audio');
  cards.forEach((a, j) => { if (j !== i) { a.pause(); } });
  const a = cards[i];
  if (a) { a.currentTime = 0; a.play().catch(() => {}); }
}

async function exportKit() {
  const name = $('kit-name').value.trim() || `kit ${new Date().toISOString().slice(0, 10)}`;
  try {
    const r = await post('/api/kit', { name });
    $('kit-result').replaceChildren(`${r.sounds === 1 ? '1 sound with its sidecar' : `${r.sounds} sounds with their sidecars`} in ${r.folder} — `,
      el('a', { href: url(`/api/kits/${encodeURIComponent(r.zip)}`), download: r.zip }, `download ${r.zip}`));
  } catch (e) { toast(e.message, 'error'); }
}
