// The seed's TypeScript samples have one home, samples.md: the documentation's code blocks as
// data, one `## NAME.ts` heading and one ```ts block each. This module turns them back into the
// files tsc checks: `writeSampleProject(dir)` writes every NAME.ts (the block's lines, byte for
// byte), seed-context.d.ts and tsconfig.json into `dir`. Used by tests/e2e/npm-package.test.mjs
// and, run as a script, by `npm run check:seed-samples` in examples/vite.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const SAMPLES_DIR = path.dirname(fileURLToPath(import.meta.url));
export const SAMPLES_MD = path.join(SAMPLES_DIR, 'samples.md');
/** Written beside the samples: the app's variables they use (seed-context.d.ts), the tsc options. */
const PROJECT_FILES = ['seed-context.d.ts', 'tsconfig.json'];

/** samples.md's text → [{ name, text }] in its order; throws naming the line on a malformed entry. */
export function parseSamples(md) {
  const lines = md.split('\n');
  const samples = [];
  for (let i = 0; i < lines.length; i++) {
    const heading = /^## (.+)$/.exec(lines[i]);
    if (!heading) continue;
    const name = heading[1];
    const where = `samples.md:${i + 1} (${name})`;
    if (!/^[\w-]+\.ts$/.test(name) || name.endsWith('.d.ts')) throw new Error(`${where}: a sample's heading is its file name, NAME.ts`);
    if (samples.some((s) => s.name === name)) throw new Error(`${where}: a second sample of that name`);
    let j = i + 1;
    while (lines[j] === '') j++;
    if (lines[j] !== '```ts') throw new Error(`${where}: the heading is not followed by a \`\`\`ts block`);
    const end = lines.indexOf('```', j + 1);
    if (end < 0) throw new Error(`${where}: the \`\`\`ts block is not closed`);
    samples.push({ name, text: lines.slice(j + 1, end).map((l) => `${l}\n`).join('') });
    i = end;
  }
  return samples;
}

/** The samples of samples.md. */
export function readSamples() {
  return parseSamples(fs.readFileSync(SAMPLES_MD, 'utf8'));
}

/** Writes the samples as NAME.ts files, with seed-context.d.ts and tsconfig.json, into `dir`
 *  (which must sit where `rcall/...` resolves, e.g. under examples/vite); returns the names. */
export function writeSampleProject(dir) {
  const samples = readSamples();
  for (const { name, text } of samples) fs.writeFileSync(path.join(dir, name), text);
  for (const f of PROJECT_FILES) fs.copyFileSync(path.join(SAMPLES_DIR, f), path.join(dir, f));
  return samples.map((s) => s.name);
}

// `node seed-samples/samples.mjs`: tsc -p over the samples in a scratch dir of examples/vite
// (ignored by git), so that `rcall/...` resolves through examples/vite/node_modules as an app's
// import does; exits with tsc's status.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const viteDir = path.dirname(SAMPLES_DIR);
  const dir = fs.mkdtempSync(path.join(viteDir, '.seed-samples-'));
  try {
    const names = writeSampleProject(dir);
    console.log(`${names.length} samples from ${path.relative(viteDir, SAMPLES_MD)} → tsc -p ${path.relative(viteDir, dir)}`);
    const r = spawnSync(path.join(viteDir, 'node_modules/.bin/tsc'), ['-p', dir], { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
