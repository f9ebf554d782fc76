// The studio's API: every call carries the session token from the page's URL.

const params = new URLSearchParams(location.search);
export const token = params.get('token') || '';

export async function api(method, path, body) {
  const headers = { 'x-distill-token': token };
  const init = { method, headers };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body ?? {});

/** A URL for links, players and event streams (which cannot send headers). */
export function url(path, extra = {}) {
  const u = new URL(path, location.origin);
  u.searchParams.set('token', token);
  for (const [k, v] of Object.entries(extra)) u.searchParams.set(k, v);
  return u.pathname + u.search;
}

/** Builds an element; children are nodes or text (never parsed as HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function $(id) {
  return document.getElementById(id);
}

let toastTimer;
export function toast(message, kind = 'info') {
  const t = $('toast');
  t.textContent = message;
  t.className = `show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = ''; }, kind === 'error' ? 8000 : 4000);
}

export function seconds(s) {
  if (s == null || !isFinite(s)) return '–';
  if (s < 1) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function bytes(n) {
  if (n == null) return '–';
  if (n < 1e6) return `${(n / 1e3).toFixed(0)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

/** Codebook health in plain words (the same rule as the library cards). */
export function healthVerdict(levels, codebookSize) {
  if (!levels || !levels.length) return null;
  let worst = 0;
  levels.forEach((h, i) => { if (h.utilization < levels[worst].utilization) worst = i; });
  const h = levels[worst];
  const used = Math.round(h.utilization * codebookSize);
  if (h.perplexity < 1.5 || used <= 1) return { verdict: 'collapse', text: `level ${worst + 1} uses almost a single code: the model has collapsed` };
  if (h.utilization < 0.3) return { verdict: 'some codes unused', text: `level ${worst + 1} uses ${(h.utilization * 100).toFixed(0)}% of its codes; usual for small collections` };
  return { verdict: 'healthy', text: 'every level uses a good share of its codes' };
}

/** Simple cross-module events. */
export const bus = new EventTarget();
export function emit(name, detail) { bus.dispatchEvent(new CustomEvent(name, { detail })); }
export function on(name, f) { bus.addEventListener(name, (e) => f(e.detail)); }
