// Generates GPT-2's tokenizer files offline (src/io/node-tokenizer.ts does the work):
//   npx tsx scripts/make-tokenizer.ts [out-dir]     (npm run gen:tokenizer)
// Idempotent: files whose content is already right are left untouched.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TOKENIZER_DIR, writeGpt2TokenizerFiles } from '../src/io/node-tokenizer.ts';

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] !== undefined ? resolve(process.argv[2]) : DEFAULT_TOKENIZER_DIR;
  const t0 = performance.now();
  const { files, written } = await writeGpt2TokenizerFiles(dir);
  const model = files.tokenizerJson.model as { vocab: object; merges: unknown[] };
  const ms = (performance.now() - t0).toFixed(0);
  console.log(`GPT-2 tokenizer: ${Object.keys(model.vocab).length} tokens, ${model.merges.length} merges → ${dir} ` +
    `(${written.length === 0 ? 'already up to date' : `wrote ${written.map((p) => p.slice(dir.length + 1)).join(', ')}`}; ${ms} ms)`);
}
