// Tokenizer throughput: GPT-2 byte-level BPE (src/io/tokenizer.ts over transformers.js) on the
// committed Dracula excerpt, whole-text encode and the streamed corpus path (tokenizeCorpus, with
// chunking at safe cuts), next to js-tiktoken's independent GPT-2 encoder as a peer on the same
// CPU. `npm run bench:tokenizer` prints MB/s and appends a dated line to bench/README.md
// (unless --no-log).
import { appendFile, readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { getEncoding } from 'js-tiktoken';
import { tokenizeCorpus } from '../src/io/corpus.ts';
import { loadDefaultTokenizer } from '../src/io/tokenizer.ts';

const text = await readFile(new URL('../test/fixtures/corpora/dracula-excerpt.txt', import.meta.url), 'utf8');
const mb = Buffer.byteLength(text) / 1e6;
const repeats = 3;

async function measure(name: string, fn: () => unknown | Promise<unknown>): Promise<[string, number]> {
  await fn(); // warm-up: caches and JIT
  const t0 = performance.now();
  for (let i = 0; i < repeats; i++) await fn();
  const s = (performance.now() - t0) / 1000 / repeats;
  return [name, mb / s];
}

const tok = await loadDefaultTokenizer();
const tiktoken = getEncoding('gpt2');
const rows = [
  await measure('studio tokenizer, encode(whole text)', () => tok.encode(text)),
  await measure('studio tokenizeCorpus (streamed, chunked)', () => tokenizeCorpus([{ name: 'dracula.txt', text }], tok)),
  await measure('js-tiktoken gpt2 (peer)', () => tiktoken.encode(text, 'all')),
];
const table = ['| encoder | MB/s |', '|---|---|', ...rows.map(([n, v]) => `| ${n} | ${v.toFixed(2)} |`)].join('\n');
console.log(`Dracula excerpt, ${mb.toFixed(2)} MB, ${repeats} timed runs after one warm-up\n\n${table}`);
if (!process.argv.includes('--no-log')) {
  const when = new Date().toISOString().replace('T', ' ').slice(0, 19);
  await appendFile(new URL('./README.md', import.meta.url), `\n### ${when} UTC — tokenizer\n\n- ${mb.toFixed(2)} MB of Dracula, ${repeats} timed runs after one warm-up, load average ${loadavg()[0].toFixed(1)}\n\n${table}\n`);
  console.log('\nappended to bench/README.md');
}
