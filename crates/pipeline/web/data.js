// The Data tab: a folder (typed or browsed on the server) or uploaded files, then the scan.

import { $, el, get, post, api, toast, seconds, bytes, token, emit } from './api.js';

let limits = { max_file_bytes: 0, max_files: 0 };
let lastScan = null;

export function init({ show }) {
  get('/api/state').then((s) => {
    limits = s.limits;
    $('upload-limits').textContent = `Up to ${limits.max_files} files per collection, ${bytes(limits.max_file_bytes)} per file. WAV, FLAC, MP3, Ogg, AIFF. Files are checked before they are kept.`;
    $('lib-dir').textContent = s.models_dir;
  }).catch((e) => toast(e.message, 'error'));
  $('data-scan').addEventListener('click', () => scan($('data-path').value));
  $('data-path').addEventListener('keydown', (e) => { if (e.key === 'Enter') scan($('data-path').value); });
  $('data-browse').addEventListener('click', () => browse($('data-path').value || null));
  $('scan-use').addEventListener('click', () => {
    if (!lastScan) return;
    emit('use-folder', lastScan);
    show('train');
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    upload([...e.dataTransfer.files]);
  });
  $('upload-input').addEventListener('change', (e) => upload([...e.target.files]));
}

async function browse(path) {
  const box = $('browser');
  try {
    const q = path ? `?path=${encodeURIComponent(path)}` : '';
    const r = await get(`/api/fs/browse${q}`);
    box.hidden = false;
    box.replaceChildren();
    const head = el('div', { class: 'row' },
      el('strong', { class: 'grow path' }, r.path ?? 'Folders you can use'),
      r.parent ? el('button', { class: 'secondary', onclick: () => browse(r.parent) }, '↑ up') : null,
      !r.path ? null : el('button', { class: 'secondary', onclick: () => browse(null) }, 'roots'),
      r.path ? el('button', { onclick: () => { $('data-path').value = r.path; box.hidden = true; scan(r.path); } }, `Choose this folder (${r.files} files)`) : null,
      el('button', { class: 'secondary', onclick: () => { box.hidden = true; } }, 'close'));
    const list = el('ul', { class: 'dirs' },
      r.dirs.map((d) => el('li', {}, el('a', { href: '#', onclick: (e) => { e.preventDefault(); browse(d.path); } }, `📁 ${d.name}`))));
    if (!r.dirs.length) list.append(el('li', { class: 'hint' }, 'no sub-folders'));
    box.append(head, list);
  } catch (e) {
    toast(e.message, 'error');
  }
}

export async function scan(path) {
  if (!path) { toast('Type or browse to a folder first', 'error'); return; }
  $('data-scan').disabled = true;
  $('data-scan').textContent = 'Scanning…';
  try {
    const r = await post('/api/scan', { path });
    lastScan = r;
    render(r);
  } catch (e) {
    toast(e.message, 'error');
  } finally {
    $('data-scan').disabled = false;
    $('data-scan').textContent = 'Scan';
  }
}

function render(r) {
  $('scan-result').hidden = false;
  $('scan-root').textContent = r.root;
  const t = r.totals;
  $('scan-totals').replaceChildren(
    el('span', {}, el('b', {}, t.usable), ' usable files'),
    el('span', {}, el('b', {}, t.rejected), ' skipped'),
    el('span', {}, el('b', {}, seconds(t.duration_s)), ' of audio'),
    el('span', {}, el('b', {}, t.chunks), ' one-second chunks'));
  $('scan-tier').replaceChildren(el('b', {}, `${r.tier.name} collection`), ' — ', r.tier.meaning ?? '');
  const body = $('scan-table').tBodies[0];
  body.replaceChildren(...r.files.map((f) => el('tr', { class: f.usable ? '' : 'bad' },
    el('td', { class: 'path' }, f.name),
    el('td', {}, f.format ?? '–'),
    el('td', {}, f.sample_rate ? `${(f.sample_rate / 1000).toFixed(1)} kHz` : '–'),
    el('td', {}, f.channels === 1 ? 'mono' : f.channels === 2 ? 'stereo' : f.channels ?? '–'),
    el('td', {}, f.duration_s != null ? seconds(f.duration_s) : '–'),
    el('td', {}, f.problems.length ? f.problems.map((p) => el('div', { class: p.fatal ? 'fatal' : 'warn' }, p.fatal ? `skipped: ${p.text}` : p.text)) : el('span', { class: 'ok' }, 'ok')))));
  $('scan-use').disabled = t.usable < 2;
}

async function upload(files) {
  const log = $('upload-log');
  if (!files.length) return;
  const name = $('upload-name').value.trim() || `upload ${new Date().toISOString().slice(0, 16).replace('T', ' ').replace(':', 'h')}`;
  if (files.length > limits.max_files) {
    toast(`Too many files: a collection holds at most ${limits.max_files}`, 'error');
    return;
  }
  let collection;
  try {
    collection = await post('/api/collections', { name });
  } catch (e) {
    toast(e.message, 'error');
    return;
  }
  $('upload-name').value = collection.name;
  log.replaceChildren();
  let ok = 0;
  for (const f of files) {
    const item = el('li', {}, `${f.name}: `);
    log.append(item);
    if (f.size > limits.max_file_bytes) {
      item.append(el('span', { class: 'fatal' }, `too large (${bytes(f.size)}; the limit is ${bytes(limits.max_file_bytes)})`));
      continue;
    }
    item.append(el('span', { class: 'hint' }, 'uploading…'));
    try {
      const res = await fetch(`/api/collections/${encodeURIComponent(collection.name)}/files/${encodeURIComponent(f.name)}`, {
        method: 'PUT', headers: { 'x-distill-token': token }, body: f,
      });
      const j = await res.json().catch(() => ({ error: res.statusText }));
      item.lastChild.remove();
      if (!res.ok) item.append(el('span', { class: 'fatal' }, j.error));
      else { ok++; item.append(el('span', { class: 'ok' }, `${j.format}, ${seconds(j.duration_s)}`)); }
    } catch (e) {
      item.lastChild.remove();
      item.append(el('span', { class: 'fatal' }, e.message));
    }
  }
  toast(`${ok} of ${files.length} files kept in ${collection.name}`, ok ? 'info' : 'error');
  $('data-path').value = collection.path;
  if (ok) scan(collection.path);
}

// Used by tests and the console: the last scan.
export function last() { return lastScan; }
void api;
