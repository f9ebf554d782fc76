// The Train tab: start a run, follow it live (loss curves, codebook health, time per epoch,
// ETA, previews), cancel and resume. The event stream replays the whole run first, so a
// reloaded page or a second tab continues from the current state.

import { $, el, get, post, url, toast, seconds, healthVerdict, on, emit } from './api.js';
import { LossChart } from './chart.js';

let charts;
let source = null;
let current = null; // {id, state, ...}
let run = null; // what the events told so far

function fresh() {
  return { epochs: { vqvae: 0, prior: 0 }, done: { vqvae: new Map(), prior: new Map() }, stage: null, codebookSize: 0, model: null, previews: null, messages: [], state: null };
}

export function init({ show }) {
  charts = { vqvae: new LossChart($('chart-vqvae')), prior: new LossChart($('chart-prior')) };
  window.distillCharts = charts;
  on('use-folder', (scan) => {
    $('train-data').value = scan.root;
    const d = scan.tier.defaults || {};
    const set = (id, v) => { $(id).placeholder = v ?? ''; };
    set('train-epochs', d.epochs); set('train-codes', d.codebook_size); set('train-levels', d.rvq_levels);
    set('train-hidden', d.hidden_size); set('train-layers', d.layers); set('train-heads', d.heads);
    $('train-tier').textContent = `${scan.tier.name} collection: ${scan.tier.meaning} Empty fields keep these defaults.`;
    if (!$('train-name').value) $('train-name').value = (scan.root.split('/').filter(Boolean).pop() || 'model').replace(/[^\w .()+,-]/g, '_');
  });
  $('train-start').addEventListener('click', start);
  $('run-cancel').addEventListener('click', async () => {
    try { await post(`/api/jobs/${current.id}/cancel`); toast('Stopping at the next step; the checkpoint is kept'); } catch (e) { toast(e.message, 'error'); }
  });
  $('run-resume').addEventListener('click', async () => {
    try { const r = await post(`/api/jobs/${current.id}/resume`); attach(r.job); emit('jobs-changed'); } catch (e) { toast(e.message, 'error'); }
  });
  attachLatest();
  void show;
}

export function shown() {}

async function attachLatest() {
  try {
    const { jobs } = await get('/api/jobs');
    const latest = jobs.find((j) => j.kind === 'train');
    if (latest) attach(latest.id);
  } catch (e) { toast(e.message, 'error'); }
}

/** Called with every job list: follows a newer training job (started in another tab). */
export function jobsChanged(jobs) {
  const latest = jobs.find((j) => j.kind === 'train');
  if (latest && (!current || latest.id > current.id)) attach(latest.id);
}

async function start() {
  const num = (id) => { const v = $(id).value.trim(); return v === '' ? undefined : Number(v); };
  const body = {
    data: $('train-data').value.trim(), name: $('train-name').value.trim(),
    epochs: num('train-epochs'), codebook_size: num('train-codes'), rvq_levels: num('train-levels'),
    hidden_size: num('train-hidden'), layers: num('train-layers'), heads: num('train-heads'), seed: num('train-seed'),
  };
  try {
    const r = await post('/api/jobs/train', body);
    toast(`Training ${r.model} (job ${r.job})`);
    attach(r.job);
    emit('jobs-changed');
  } catch (e) { toast(e.message, 'error'); }
}

function attach(id) {
  if (source) source.close();
  current = { id };
  run = fresh();
  charts.vqvae.clear(); charts.prior.clear();
  $('run').hidden = false;
  $('run').dataset.job = id;
  $('run-title').textContent = `Run (job ${id})`;
  $('run-previews').replaceChildren();
  $('run-messages').replaceChildren();
  $('run-health').textContent = '';
  get(`/api/jobs/${id}`).then((j) => {
    $('run-title').textContent = j.title;
    if (!$('train-data').value && j.request?.data) $('train-data').value = j.request.data;
  }).catch(() => {});
  source = new EventSource(url(`/api/jobs/${id}/events`));
  source.onmessage = (m) => { handle(JSON.parse(m.data)); status(); };
  source.addEventListener('end', () => { source.close(); source = null; status(); });
  status();
}

function message(text, kind = '') {
  $('run-messages').append(el('li', { class: kind }, text));
}

function handle(e) {
  switch (e.event) {
    case 'config':
      run.epochs.vqvae = e.train_vqvae ? e.vqvae_config.max_epochs : 0;
      run.epochs.prior = e.train_prior ? e.prior_config.max_epochs : 0;
      run.codebookSize = e.vqvae_config.codebook_size;
      charts.vqvae.setTotal(run.epochs.vqvae); charts.prior.setTotal(run.epochs.prior);
      message(`${e.files} files (${seconds(e.total_duration_s)}): ${e.train_chunks} training / ${e.val_chunks} validation chunks, seed ${e.seed}${e.resumed_at ? `, continuing after epoch ${e.resumed_at}` : ''}`);
      break;
    case 'stage_started':
      run.stage = e.stage;
      break;
    case 'epoch': {
      run.stage = e.stage;
      run.done[e.stage].set(e.epoch, e.seconds);
      charts[e.stage].add(e.epoch, e.train_loss, e.val_loss, e.is_best);
      const h = e.extra?.codebook_health;
      if (h) {
        const v = healthVerdict(h, run.codebookSize);
        const el_ = $('run-health');
        el_.textContent = `Codebook: ${v.verdict} — ${v.text} (${h.map((l) => `${(l.utilization * 100).toFixed(0)}%`).join(' / ')} of codes in use)`;
        el_.dataset.verdict = v.verdict;
      }
      break;
    }
    case 'preview':
      previews(e);
      break;
    case 'warning':
      message(`warning: ${e.message}`, 'warn');
      break;
    case 'stage_finished':
      if (e.plateau_stop) {
        const p = e.plateau_stop;
        message(`${e.stage}: stopped after epoch ${p.epochs_trained} of ${p.epochs}: no better validation in the last ${p.patience} epochs`);
      }
      message(e.stage === 'prior'
        ? `prior: best validation perplexity ${e.best_perplexity?.toFixed(2)} at epoch ${e.best_epoch}`
        : `VQ-VAE: best validation loss ${e.best_val_loss.toFixed(4)} at epoch ${e.best_epoch} (kept)`);
      break;
    case 'interrupted':
      message(e.by_user ? 'cancelled: the last completed epoch is saved — Resume continues from it' : 'stopped; resumable', 'warn');
      break;
    case 'resumed':
      message(`resumed (continuing job ${e.from_job})`);
      break;
    case 'done':
      run.model = e.model_path.split('/').pop();
      message(`finished: ${run.model} is in the Library and ready to generate`, 'ok');
      emit('model-trained', run.model);
      break;
    case 'job':
      run.state = e.state;
      if (e.error) message(e.error, 'fatal');
      emit('jobs-changed');
      break;
    default:
      break;
  }
}

function previews(e) {
  const box = $('run-previews');
  box.replaceChildren();
  const files = e.files || [];
  const chunks = new Set(files.map((f) => (f.match(/chunk(\d+)/) || [])[1]).filter(Boolean));
  for (const i of [...chunks].sort()) {
    const of = (re) => files.find((f) => re.test(f) && f.includes(`chunk${i}.`));
    const orig = of(/original_chunk/);
    const recon = of(/vqvae_epoch\d+_chunk\d+\.wav$/);
    const png = of(/\.png$/);
    const src = (f) => url(`/api/jobs/${current.id}/report/${f.split('/').map(encodeURIComponent).join('/')}`);
    box.append(el('div', { class: 'preview' },
      el('div', { class: 'hint' }, `chunk ${Number(i) + 1}, epoch ${e.epoch}`),
      png ? el('img', { src: src(png), alt: `mel spectrograms, original and reconstruction, epoch ${e.epoch}` }) : null,
      el('div', { class: 'pair' },
        el('label', {}, 'original', orig ? el('audio', { controls: true, preload: 'none', src: src(orig) }) : null),
        el('label', {}, 'reconstruction', recon ? el('audio', { controls: true, preload: 'none', src: src(recon) }) : null))));
  }
}

function mean(m) {
  const v = [...m.values()];
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

function status() {
  if (!run) return;
  const state = run.state || 'connecting';
  const badge = $('run-state');
  badge.textContent = state;
  badge.dataset.state = state;
  const vq = run.done.vqvae.size, pr = run.done.prior.size;
  const stage = run.stage === 'prior' ? 'prior' : 'VQ-VAE';
  const done = run.stage === 'prior' ? pr : vq;
  const total = run.stage === 'prior' ? run.epochs.prior : run.epochs.vqvae;
  const per = mean(run.stage === 'prior' ? run.done.prior : run.done.vqvae);
  $('run-progress').textContent = run.stage ? `${stage} epoch ${done}/${total} · ${seconds(per)} per epoch` : '';
  let eta = null;
  if (state === 'running') {
    const vqPer = mean(run.done.vqvae), prPer = mean(run.done.prior) ?? vqPer;
    eta = Math.max(0, run.epochs.vqvae - vq) * (vqPer ?? 0) + Math.max(0, run.epochs.prior - pr) * (prPer ?? 0);
  }
  $('run-eta').textContent = eta != null && (vq || pr) ? `about ${seconds(eta)} left` : '';
  $('run-cancel').hidden = !(state === 'running' || state === 'queued');
  $('run-resume').hidden = !['cancelled', 'interrupted', 'failed'].includes(state) || run.model != null;
}
