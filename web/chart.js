// A small live line chart on a canvas: the last `size` points of a few series, each
// scaled to its own range (percentages to 0-100, rates to their window maximum).

export class LiveChart {
  constructor(canvas, series, { size = 120 } = {}) {
    this.canvas = canvas;
    this.series = series; // [{key, label, color, max?: number, unit}]
    this.size = size;
    this.points = [];
    this.total = 0;
  }

  push(point) {
    this.points.push(point);
    if (this.points.length > this.size) this.points.shift();
    this.total++;
    this.canvas.dataset.points = String(this.total);
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const ctx = c.getContext('2d');
    const dpr = (typeof devicePixelRatio === 'number' && devicePixelRatio) || 1;
    const w = c.clientWidth || c.width;
    const h = c.clientHeight || c.height;
    if (c.width !== Math.round(w * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = '#e6e9ef';
    ctx.lineWidth = 1;
    for (let i = 1; i < 4; i++) {
      const y = Math.round((h * i) / 4) + 0.5;
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(w, y);
      ctx.stroke();
    }
    const n = this.points.length;
    if (n < 2) return;
    const dx = w / (this.size - 1);
    const x0 = w - (n - 1) * dx;
    for (const s of this.series) {
      const vals = this.points.map((p) => p[s.key]);
      const max = s.max ?? Math.max(1, ...vals) * 1.1;
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      vals.forEach((v, i) => {
        const y = h - 4 - (Math.min(v, max) / max) * (h - 8);
        if (i === 0) ctx.moveTo(x0, y);
        else ctx.lineTo(x0 + i * dx, y);
      });
      ctx.stroke();
    }
  }
}
