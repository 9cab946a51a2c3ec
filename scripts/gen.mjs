// Generates the offline assets the studio and the tests use. Each generator is idempotent.
// (Kept in plain JS so it runs before anything is compiled.)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const generators = [
  ['scripts/make-tokenizer.ts', 'GPT-2 tokenizer'],
  ['scripts/make-demo-model.ts', 'built-in demo model'],
];
for (const [script, what] of generators) {
  if (!existsSync(script)) continue;
  const r = spawnSync('npx', ['tsx', script], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`gen: ${what} (${script}) failed`);
    process.exit(1);
  }
}
