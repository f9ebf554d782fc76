// Loss curves on a canvas: training (solid) and validation (dashed) per epoch.

export class LossChart {
  constructor(canvas, { yLabel = 'loss' } = {}) {
    this.canvas = canvas;
    this.yLabel = yLabel;
    this.points = new Map(); // epoch -> {train, val, best}
    this.total = 0;
    this.draw();
  }

  clear() {
    this.points.clear();
    this.total = 0;
    this.draw();
  }

  /** Adds (or replaces, after a resume) an epoch. */
  add(epoch, train, val, best) {
    this.points.set(epoch, { train, val, best });
    this.draw();
  }

  setTotal(epochs) {
    this.total = epochs;
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const ctx = c.getContext('2d');
    const w = c.width, h = c.height;
    const pad = { l: 52, r: 12, t: 12, b: 30 };
    ctx.clearRect(0, 0, w, h);
    const style = getComputedStyle(document.documentElement);
    const fg = style.getPropertyValue('--muted').trim() || '#888';
    const grid = style.getPropertyValue('--line').trim() || '#ddd';
    const cTrain = style.getPropertyValue('--accent').trim() || '#36c';
    const cVal = style.getPropertyValue('--accent2').trim() || '#c63';
    const epochs = [...this.points.keys()].sort((a, b) => a - b);
    c.dataset.points = String(epochs.length);
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = fg;
    if (!epochs.length) {
      ctx.fillText('waiting for the first epoch…', pad.l, h / 2);
      return;
    }
    const values = epochs.flatMap((e) => [this.points.get(e).train, this.points.get(e).val]).filter((v) => v != null && isFinite(v));
    let lo = Math.min(...values), hi = Math.max(...values);
    if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
    const span = hi - lo;
    lo -= span * 0.05; hi += span * 0.05;
    const maxE = Math.max(this.total || 0, epochs[epochs.length - 1], 2);
    const x = (e) => pad.l + ((e - 1) / (maxE - 1)) * (w - pad.l - pad.r);
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (h - pad.t - pad.b);
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(w - pad.r, y(v)); ctx.stroke();
      ctx.fillText(v.toFixed(v < 10 ? 3 : 1), 4, y(v) + 4);
    }
    const ticks = Math.min(maxE, 6);
    for (let i = 0; i < ticks; i++) {
      const e = Math.round(1 + ((maxE - 1) * i) / Math.max(ticks - 1, 1));
      ctx.fillText(String(e), x(e) - 4, h - pad.b + 14);
    }
    ctx.fillText('epoch', w - pad.r - 30, h - 4);
    const line = (key, colour, dash) => {
      ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.setLineDash(dash);
      ctx.beginPath();
      let started = false;
      for (const e of epochs) {
        const v = this.points.get(e)[key];
        if (v == null || !isFinite(v)) continue;
        if (started) ctx.lineTo(x(e), y(v)); else ctx.moveTo(x(e), y(v));
        started = true;
      }
      ctx.stroke();
      ctx.setLineDash([]);
      if (epochs.length === 1) {
        const v = this.points.get(epochs[0])[key];
        if (v != null) { ctx.fillStyle = colour; ctx.beginPath(); ctx.arc(x(epochs[0]), y(v), 3, 0, 7); ctx.fill(); }
      }
    };
    line('train', cTrain, []);
    line('val', cVal, [6, 4]);
    const best = epochs.filter((e) => this.points.get(e).best).pop();
    if (best) {
      const v = this.points.get(best).val;
      ctx.strokeStyle = cVal; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(x(best), y(v), 6, 0, 7); ctx.stroke();
    }
    ctx.fillStyle = cTrain; ctx.fillRect(w - 150, pad.t + 2, 12, 3);
    ctx.fillStyle = fg; ctx.fillText('training', w - 134, pad.t + 7);
    ctx.fillStyle = cVal; ctx.fillRect(w - 80, pad.t + 2, 12, 3);
    ctx.fillStyle = fg; ctx.fillText('validation', w - 64, pad.t + 7);
  }
}

/** A small history thumbnail: validation loss of both stages side by side. */
export function sparkline(canvas, stages) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const style = getComputedStyle(document.documentElement);
  const colours = [style.getPropertyValue('--accent').trim(), style.getPropertyValue('--accent2').trim()];
  const parts = stages.filter((s) => s && s.length);
  if (!parts.length) {
    ctx.fillStyle = style.getPropertyValue('--muted').trim();
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillText('no training history', 8, h / 2 + 4);
    return;
  }
  const pw = w / parts.length;
  parts.forEach((series, i) => {
    const vals = series.map((p) => p[1]).filter((v) => v != null && isFinite(v));
    if (!vals.length) return;
    const lo = Math.min(...vals), hi = Math.max(...vals);
    ctx.strokeStyle = colours[i % 2]; ctx.lineWidth = 1.5;
    ctx.beginPath();
    vals.forEach((v, j) => {
      const px = i * pw + 4 + (j / Math.max(vals.length - 1, 1)) * (pw - 8);
      const py = 4 + (1 - (hi > lo ? (v - lo) / (hi - lo) : 0.5)) * (h - 8);
      if (j) ctx.lineTo(px, py); else ctx.moveTo(px, py);
    });
    ctx.stroke();
  });
}

/** Draws a waveform (min/max per column) of decoded samples. */
export function waveform(canvas, samples) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = getComputedStyle(document.documentElement).getPropertyValue('--accent').trim();
  const per = Math.max(1, Math.floor(samples.length / w));
  for (let x = 0; x < w; x++) {
    let mn = 0, mx = 0;
    const start = x * per;
    for (let i = start; i < Math.min(start + per, samples.length); i++) {
      const v = samples[i];
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    const y0 = (1 - mx) * h / 2, y1 = (1 - mn) * h / 2;
    ctx.fillRect(x, y0, 1, Math.max(1, y1 - y0));
  }
}
