/**
 * @module bench/chart — renders the results JSON as an SVG bar chart (no network, no packages).
 * CLI: `tsx bench/chart.ts <results.json> <chart.svg>`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fmtInt, fmtRatio } from './lib/report.js';
import type { Results, ThroughputRow } from './lib/results.js';

const WIDTH = 1000;
const LABEL_W = 400;
const BAR_H = 20;
const GAP = 6;
const COLORS: Record<ThroughputRow['kind'], string> = {
  ceiling: '#9aa0a6',
  eventual: '#1a73e8',
  strong: '#7baaf7',
  baseline: '#e8710a',
  reference: '#d5d5d5',
};

/** The SVG for one results file: single-increment req/s per route, and batched increments/s. */
export function renderChart(r: Results): string {
  const rows = [...r.throughput].sort((a, b) => order(a) - order(b) || b.reqPerSec - a.reqPerSec);
  const express = r.throughput.find((t) => t.id === 'express-incr');
  const max = Math.max(...rows.map((t) => t.reqPerSec));
  const plotW = WIDTH - LABEL_W - 180;
  const top = 70;
  const parts: string[] = [];
  let y = top;
  for (const t of rows) {
    const w = Math.max(1, (t.reqPerSec / max) * plotW);
    const note =
      express && t.id !== express.id
        ? ` · ${fmtRatio(t.reqPerSec / express.reqPerSec)} Express`
        : '';
    parts.push(
      `<text x="${LABEL_W - 8}" y="${y + BAR_H - 6}" text-anchor="end">${esc(t.label)}</text>`,
      `<rect x="${LABEL_W}" y="${y}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${COLORS[t.kind]}"/>`,
      `<text x="${(LABEL_W + w + 6).toFixed(1)}" y="${y + BAR_H - 6}">${fmtInt(t.reqPerSec)}${esc(note)}</text>`,
    );
    y += BAR_H + GAP;
  }
  y += 30;
  const batchTop = y;
  const batchMax = Math.max(1, ...r.batched.map((b) => b.incrementsPerSec));
  for (const b of r.batched) {
    const w = Math.max(1, (b.incrementsPerSec / batchMax) * plotW);
    parts.push(
      `<text x="${LABEL_W - 8}" y="${y + BAR_H - 6}" text-anchor="end">${esc(b.label)}</text>`,
      `<rect x="${LABEL_W}" y="${y}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${COLORS.eventual}"/>`,
      `<text x="${(LABEL_W + w + 6).toFixed(1)}" y="${y + BAR_H - 6}">${fmtInt(b.incrementsPerSec)} increments/s</text>`,
    );
    y += BAR_H + GAP;
  }
  const height = y + 40;
  const m = r.machine;
  const legend = (Object.keys(COLORS) as ThroughputRow['kind'][])
    .map(
      (kind, i) =>
        `<rect x="${LABEL_W + i * 110}" y="${height - 26}" width="12" height="12" fill="${COLORS[kind]}"/>` +
        `<text x="${LABEL_W + i * 110 + 16}" y="${height - 16}">${kind}</text>`,
    )
    .join('');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12" role="img" aria-labelledby="title">`,
    `<title id="title">Tally benchmark: single increments per second by configuration, against the no-op ceiling and the INCR-per-request baselines</title>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="16" y="26" font-size="16" font-weight="600">Tally: single increments per second (higher is better)</text>`,
    `<text x="16" y="46" fill="#555">${esc(`${r.mode} run ${r.startedAt.slice(0, 10)} · ${m.cpus} × ${m.cpuModel} · Node ${m.node} · redis ${m.redis} · autocannon ${r.method.connections} connections in the same machine`)}</text>`,
    ...parts,
    `<text x="16" y="${batchTop - 12}" font-size="14" font-weight="600">Batched: POST /api/v1/increments, 1000 per request, one process</text>`,
    legend,
    '</svg>',
    '',
  ].join('\n');
}

function order(t: ThroughputRow): number {
  return { reference: 0, ceiling: 1, eventual: 2, baseline: 3, strong: 4 }[t.kind];
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [input, output] = process.argv.slice(2);
  if (input === undefined || output === undefined) {
    process.stderr.write('usage: tsx bench/chart.ts <results.json> <chart.svg>\n');
    process.exit(2);
  }
  writeFileSync(output, renderChart(JSON.parse(readFileSync(input, 'utf8')) as Results));
}
