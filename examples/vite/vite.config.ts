import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig, searchForWorkspaceRoot } from 'vite';

// Nothing wasm-specific is needed: rcall loads its wasm with
// `new URL('rcall_sdk_bg.wasm', import.meta.url)`, which `vite build` emits as a hashed asset.
// Only the dev server needs to be allowed to serve the linked package (file:../../npm/dist/esm),
// which lives outside this folder.
const linked = fileURLToPath(new URL('./node_modules/rcall', import.meta.url));
let rcall = fileURLToPath(new URL('../../npm/dist/esm', import.meta.url));
try {
  rcall = realpathSync(linked);
} catch {
  // not installed or not built yet: vite reports the missing package itself
}

export default defineConfig({
  build: { target: 'es2022' },
  server: { fs: { allow: [searchForWorkspaceRoot(process.cwd()), rcall] } },
});
