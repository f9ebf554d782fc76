// The Library tab: models as cards; open, rename, delete (with confirmation).

import { $, el, get, post, api, toast, bytes, seconds, emit, on } from './api.js';
import { sparkline } from './chart.js';

let show;

export function init(ctx) {
  show = ctx.show;
  on('model-trained', () => { if (document.body.dataset.view === 'library') load(); });
}

export function shown() {
  load();
}

async function load() {
  try {
    const { models } = await get('/api/models');
    const box = $('models');
    box.replaceChildren(...models.map(card));
    if (!models.length) box.append(el('p', { class: 'hint' }, 'No models yet: train one, or copy .distill files into the models folder.'));
  } catch (e) { toast(e.message, 'error'); }
}

function card(m) {
  const spark = el('canvas', { width: 260, height: 50, class: 'spark' });
  requestAnimationFrame(() => sparkline(spark, [m.history.vqvae, m.history.prior]));
  const date = new Date(m.modified * 1000).toLocaleString();
  const corpus = m.corpus.name ? `${m.corpus.name}: ${m.corpus.files ?? '?'} files${m.corpus.duration_s > 0 ? `, ${seconds(m.corpus.duration_s)}` : ''}` : 'corpus unknown';
  const params = (m.vqvae.parameters || 0) + (m.prior?.parameters || 0);
  return el('article', { class: 'card', dataset: { file: m.file } },
    el('h3', {}, m.name),
    el('p', { class: 'hint' }, `${date} · ${bytes(m.size)} · ${(params / 1e6).toFixed(2)} M parameters`),
    el('p', {}, corpus),
    el('p', {}, `${m.vqvae.levels} level${m.vqvae.levels === 1 ? '' : 's'} × ${m.vqvae.codes} codes`, m.prior ? ` · prior ${m.prior.layers} layers × ${m.prior.hidden_size}` : ''),
    spark,
    el('div', { class: 'row badges' },
      el('span', { class: 'badge', dataset: { verdict: m.health.verdict }, title: m.health.text }, `codebook: ${m.health.verdict}`),
      el('span', { class: `badge ${m.has_prior ? 'ok' : 'warn'}` }, m.has_prior ? 'prior ✓' : 'no prior'),
      m.reference ? el('span', { class: 'badge' }, 'reference system file') : null),
    el('div', { class: 'row' },
      el('button', { onclick: () => open(m) }, 'Open'),
      el('button', { class: 'secondary', onclick: () => rename(m) }, 'Rename'),
      el('button', { class: 'danger', onclick: () => remove(m) }, 'Delete')));
}

async function open(m) {
  try {
    const r = await get(`/api/models/${encodeURIComponent(m.file)}`);
    $('model-info').hidden = false;
    $('model-info-title').textContent = m.file;
    $('model-info-json').textContent = JSON.stringify(r.info, null, 2);
    if (m.has_prior) { emit('open-model', m.file); show('generate'); }
  } catch (e) { toast(e.message, 'error'); }
}

async function rename(m) {
  const name = prompt(`New name for ${m.file}`, m.name);
  if (!name || name === m.name) return;
  try {
    await post(`/api/models/${encodeURIComponent(m.file)}/rename`, { name });
    load();
  } catch (e) { toast(e.message, 'error'); }
}

function remove(m) {
  const dialog = $('confirm');
  $('confirm-text').textContent = `Delete ${m.file}? This removes the model file, its training report and checkpoint. Generated sounds stay.`;
  dialog.onclose = async () => {
    if (dialog.returnValue !== 'ok') return;
    try {
      await api('DELETE', `/api/models/${encodeURIComponent(m.file)}`, { confirm: m.file });
      toast(`${m.file} deleted`);
      load();
    } catch (e) { toast(e.message, 'error'); }
  };
  dialog.returnValue = '';
  dialog.showModal();
}
