import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig, searchForWorkspaceRoot } from 'vite';

// A CallLib app moved to rcall without touching its code: only these aliases, from RongCloud's
// package names to rcall's entries for them (tsconfig.json's `paths` does the same for tsc).
const alias = {
  '@rongcloud/imlib-next': 'rcall/imlib-next',
  '@rongcloud/plugin-rtc': 'rcall/plugin-rtc',
  '@rongcloud/plugin-call': 'rcall/plugin-call',
};

// Only `vite dev` needs this: the linked package (file:../../npm/dist/esm) lives outside this folder.
let rcall = fileURLToPath(new URL('../../../npm/dist/esm', import.meta.url));
try {
  rcall = realpathSync(fileURLToPath(new URL('../node_modules/rcall', import.meta.url)));
} catch {
  // not installed or not built yet: vite reports the missing package itself
}

export default defineConfig({
  resolve: { alias },
  build: { target: 'es2022' },
  server: { fs: { allow: [searchForWorkspaceRoot(process.cwd()), rcall] } },
});
