// Shared pieces of the browser benchmarks (bench/call-setup, bench/mesh): re-exec inside a
// loopback-only network namespace, statistics, table printing, BENCHMARKS.md section updates.
// The server, tokens and the browser come from tests/e2e/helpers.mjs (imported read-only).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../tests/e2e/helpers.mjs';

export { ROOT };

/** Re-runs this script as `unshare -n bash -c 'ip link set lo up; exec node SCRIPT ARGS'` unless it
 *  already runs there (RCALL_BENCH_NETNS=1) or RCALL_NO_NETNS=1 is set. Exits with the child's code. */
export function ensureNetns() {
  if (process.env.RCALL_BENCH_NETNS === '1' || process.env.RCALL_NO_NETNS === '1') return;
  if (spawnSync('unshare', ['-n', 'true']).status !== 0) {
    console.error('unshare -n is not permitted here (run as root), or set RCALL_NO_NETNS=1 to run in the default namespace');
    process.exit(2);
  }
  const r = spawnSync('unshare', ['-n', 'bash', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, RCALL_BENCH_NETNS: '1' },
  });
  process.exit(r.status ?? 1);
}

export function median(xs) {
  return quantile(xs, 0.5);
}

/** Linear-interpolated quantile of the finite values in xs (NaN when there are none). */
export function quantile(xs, q) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const pos = (v.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

export const fmt = (x, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');

/** Renders rows (arrays of cells) as a Markdown table; `align` per column: 'l' or 'r'. */
export function mdTable(header, rows, align = []) {
  const cells = [header, ...rows].map((r) => r.map((c) => String(c)));
  const w = header.map((_, i) => Math.max(3, ...cells.map((r) => r[i].length)));
  const line = (r) => '| ' + r.map((c, i) => (align[i] === 'r' ? c.padStart(w[i]) : c.padEnd(w[i]))).join(' | ') + ' |';
  const sep = '|' + w.map((n, i) => (align[i] === 'r' ? '-'.repeat(n + 1) + ':' : '-'.repeat(n + 2))).join('|') + '|';
  return [line(cells[0]), sep, ...cells.slice(1).map(line)].join('\n');
}

/** The text of the `## <title>` section of BENCHMARKS.md from the line `keep` (e.g. `### Notes`) to
 *  the section's end, or `fallback` when there is none: hand-written notes that a re-run keeps. */
export function keptNotes(title, keep, fallback) {
  try {
    const text = fs.readFileSync(path.join(ROOT, 'BENCHMARKS.md'), 'utf8');
    const sec = text.split(/^## /m).find((s) => s.startsWith(`${title}\n`));
    const i = sec ? sec.indexOf(`\n${keep}\n`) : -1;
    if (i >= 0) return sec.slice(i + 1).trim();
  } catch {}
  return fallback;
}

/** Replaces (or adds) the `## <title>` section of BENCHMARKS.md with `body`, keeping every
 *  other section as it is. The section runs to the next `## ` heading or the end of the file. A
 *  new section goes right after section `## <after>` when given and present, else at the end. */
export function writeBenchmarkSection(title, body, { after } = {}) {
  const file = path.join(ROOT, 'BENCHMARKS.md');
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n';
  const heading = `## ${title}`;
  const section = `${heading}\n\n${body.trim()}\n`;
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === heading);
  const afterStart = after ? lines.findIndex((l) => l.trim() === `## ${after}`) : -1;
  if (start < 0 && afterStart >= 0) {
    let end = lines.findIndex((l, i) => i > afterStart && /^## /.test(l));
    if (end < 0) end = lines.length;
    text = [...lines.slice(0, end), '', section, ...lines.slice(end)].join('\n');
  } else if (start < 0) {
    text = text.replace(/\n*$/, '\n\n') + section;
  } else {
    let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
    if (end < 0) end = lines.length;
    const after = lines.slice(end).join('\n');
    text = lines.slice(0, start).join('\n') + (start ? '\n' : '') + section + (after ? '\n' + after : '');
  }
  fs.writeFileSync(file, text.replace(/\n{3,}/g, '\n\n'));
  return file;
}

/** Machine facts for the report header. */
export function machineInfo(browserVersion) {
  let cpu = '';
  try {
    cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) || [])[1] || '';
  } catch {}
  const cores = (() => { try { return fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^processor\s*:/gm).length; } catch { return '?'; } })();
  return `${cores} cores${cpu ? ` (${cpu.trim()})` : ''}, Chromium ${browserVersion}, node ${process.version}`;
}

/** The 1-minute load average (other work on the machine skews every browser figure). */
export function loadAvg() {
  try { return Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]); } catch { return NaN; }
}
