// distill studio: tabs, the job queue line, and the four tabs' modules.

import { $, get, token, on, el } from './api.js';
import * as data from './data.js';
import * as train from './train.js';
import * as generate from './generate.js';
import * as library from './library.js';

const tabs = ['data', 'train', 'generate', 'library'];
const modules = { data, train, generate, library };

export function show(tab) {
  if (!tabs.includes(tab)) tab = 'data';
  for (const t of tabs) {
    $(`tab-${t}`).hidden = t !== tab;
    document.querySelector(`nav [data-tab="${t}"]`).setAttribute('aria-selected', String(t === tab));
  }
  document.body.dataset.view = tab;
  if (location.hash !== `#${tab}`) history.replaceState(null, '', `${location.search}#${tab}`);
  modules[tab].shown?.();
}

async function refreshQueue() {
  try {
    const { jobs } = await get('/api/jobs');
    const running = jobs.filter((j) => j.state === 'running');
    const queued = jobs.filter((j) => j.state === 'queued').sort((a, b) => a.queue_position - b.queue_position);
    const q = $('queue');
    q.replaceChildren();
    if (!running.length && !queued.length) q.append(el('span', { class: 'idle' }, 'no job running'));
    for (const j of running) q.append(el('span', { class: 'job running' }, `▶ ${j.title}`));
    for (const j of queued) q.append(el('span', { class: 'job queued' }, `${j.queue_position}. ${j.title}`));
    train.jobsChanged(jobs);
  } catch (e) {
    $('queue').textContent = e.message;
  }
}

function start() {
  if (!token) {
    $('no-token').hidden = false;
    return;
  }
  for (const b of document.querySelectorAll('nav [data-tab]')) b.addEventListener('click', () => show(b.dataset.tab));
  for (const m of Object.values(modules)) m.init({ show });
  on('jobs-changed', refreshQueue);
  show(location.hash.slice(1) || 'data');
  refreshQueue();
  setInterval(refreshQueue, 2000);
  document.body.dataset.ready = 'true';
}

start();
