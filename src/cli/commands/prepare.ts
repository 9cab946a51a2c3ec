// `prepare`: corpus files → nanoGPT-style train.bin / val.bin (raw uint16 ids; or llm.c's format
// with --format llmc), tokenized with the model's tokenizer (a local folder or a Hub id, whose
// config and tokenizer alone are downloaded), split by documents with a seeded shuffle. The
// statistics are printed to stdout as JSON, progress goes to stderr.
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StudioError } from '../../engine/errors.ts';
import { RUN_DEFAULTS } from '../../engine/train/run-settings.ts';
import { prepareCorpus } from '../../io/prepare.ts';
import { writeLlmcTokens, writeNanoGptTokens } from '../../io/token-files.ts';
import { loadConfigFile, nodeDirFiles, nodeFileSource } from '../../io/node-model.ts';
import { tokenizerFromModelFiles } from '../../io/tokenizer.ts';
import type { NamedFile } from '../../io/utf8.ts';
import { Args, UsageError, type CommandSpec } from '../args.ts';
import { resolveModelDir } from '../model-arg.ts';
import { checkOutputFolder, writeOutputFolder } from '../paths.ts';

/** A corpus file that cannot be used as given (missing, a token file already, a folder …). */
export class PrepareInputError extends StudioError {}

export const prepareSpec: CommandSpec = {
  name: 'prepare',
  summary: 'Tokenize corpus files into nanoGPT train.bin / val.bin with a model\'s tokenizer.',
  usage: 'npm run cli -- prepare --model <dir|owner/name[@revision]> --data <files…> --out <dir> [options]',
  options: [
    { name: 'model', kind: 'string', meta: 'dir|id', help: 'model folder, or Hub id owner/name[@revision] (only config.json and tokenizer files are downloaded)' },
    { name: 'data', kind: 'list', meta: 'file…', help: 'UTF-8 text: .txt/.md (one file = one document), .jsonl (one line = one document), .csv (one row = one document)' },
    { name: 'out', kind: 'string', meta: 'dir', help: 'output folder for train.bin and val.bin: new, empty, or an earlier output of prepare (never the model folder)' },
    { name: 'overwrite', kind: 'flag', help: 'write into a non-empty --out holding other files (train.bin and val.bin are replaced, the rest kept)' },
    { name: 'val-fraction', kind: 'float', default: 0.1, help: 'fraction of documents held out for validation (a single document is split at a window boundary)' },
    { name: 'seed', kind: 'int', default: RUN_DEFAULTS.seed, help: 'seed of the document shuffle that picks the validation documents' },
    { name: 'seq', kind: 'int', default: 128, help: 'context length T for the window counts and a single-document split (use train\'s --seq)' },
    { name: 'format', kind: 'string', default: 'nanogpt', choices: ['nanogpt', 'llmc'], help: 'nanogpt: raw uint16 ids; llmc: llm.c\'s 1024-byte header + uint16 ids' },
    { name: 'jsonl-field', kind: 'string', default: 'text', help: '.jsonl: the field holding the text' },
    { name: 'csv-column', kind: 'string', default: 'text', help: '.csv: the column (header name or 0-based index) holding the text' },
    { name: 'endpoint', kind: 'string', optional: true, meta: 'url', help: 'Hub endpoint for a Hub id (default $HF_ENDPOINT or https://huggingface.co)' },
  ],
  notes: 'Every document is followed by the end-of-text token. Statistics are printed as JSON on stdout.\n' +
    'Hub downloads are cached in $STUDIO_CACHE (default ~/.cache/webgpu-studio); HF_TOKEN is sent for private repositories.',
};

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt'];
/** What prepare writes in --out. */
const PREPARE_OUTPUTS: readonly string[] = ['train.bin', 'val.bin'];

async function corpusFile(path: string): Promise<NamedFile> {
  const st = await stat(path).catch(() => null);
  if (!st) throw new PrepareInputError(`Cannot read data file ${path}: no such file.`);
  if (!st.isFile()) throw new PrepareInputError(`${path} is not a file. Give corpus files (.txt .md .jsonl .csv).`);
  if (/\.(bin|tokens)$/i.test(path)) {
    throw new PrepareInputError(`${path} looks like a token file already; prepare turns text into token files. Give it to train --data directly.`);
  }
  // Read in pieces, so a large text file is never held whole (src/io/corpus-stream.ts).
  return { ...(await nodeFileSource(path)), name: path };
}

export async function runPrepare(a: Args, out: (line: string) => void): Promise<void> {
  const valFraction = a.num('val-fraction');
  if (!(valFraction >= 0 && valFraction < 1)) throw new UsageError(`prepare: --val-fraction must be in [0, 1), got ${valFraction}.`);
  const seq = a.num('seq');
  if (seq < 1) throw new UsageError('prepare: --seq must be at least 1.');
  const log = (line: string) => console.error(line);
  const files = await Promise.all(a.list('data').map(corpusFile));
  if (!files.length) throw new UsageError('prepare: --data needs at least one file.');

  const modelArg = a.str('model');
  const dir = await resolveModelDir(modelArg, { endpoint: a.optStr('endpoint'), weights: false, log });
  const config = await loadConfigFile(join(dir, 'config.json'));
  // Before the (long) tokenization: an --out that would overwrite something is refused now.
  const outDir = a.str('out');
  await checkOutputFolder({
    command: 'prepare', out: outDir, modelDir: dir, inputs: files.map((f) => f.name), writes: PREPARE_OUTPUTS, overwrite: a.flag('overwrite'),
    // An earlier prepare's folder holds only its token files.
    isOurs: async (_d, entries) => entries.every((n) => PREPARE_OUTPUTS.includes(n)),
  });
  const modelFiles = await nodeDirFiles(dir);
  const tokFiles = TOKENIZER_FILES.map((n) => modelFiles.get(n)).filter((s) => s !== undefined);
  const { tokenizer, source } = await tokenizerFromModelFiles(tokFiles);
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new PrepareInputError(`The tokenizer (${source}) has ${tokenizer.vocabSize} ids but the model's vocabulary has ${config.vocabSize}: they do not belong together.`);
  }
  if (seq > config.nPositions) log(`note: --seq ${seq} is above the model's n_positions ${config.nPositions}; train will need a smaller --seq.`);

  let lastPct = -10;
  const t0 = performance.now();
  const prepared = await prepareCorpus(files, tokenizer, {
    valFraction, seed: a.num('seed'), contextLength: seq,
    jsonlField: a.str('jsonl-field'),
    csvColumn: /^\d+$/.test(a.str('csv-column')) ? Number(a.str('csv-column')) : a.str('csv-column'),
  }, (done, total) => {
    const pct = Math.floor((100 * done) / Math.max(1, total));
    if (pct >= lastPct + 10) {
      lastPct = pct;
      log(`tokenizing: ${pct}%`);
    }
  });
  const seconds = (performance.now() - t0) / 1000;
  if (prepared.stats.message) log(prepared.stats.message);

  const format = a.str('format');
  const write = format === 'llmc' ? writeLlmcTokens : writeNanoGptTokens;
  const trainPath = join(outDir, 'train.bin');
  const valPath = join(outDir, 'val.bin');
  // Both files appear together or not at all (paths.ts): never a new train.bin beside an old val.bin.
  await writeOutputFolder('prepare', outDir, async (stage) => {
    await writeFile(join(stage, 'train.bin'), write(prepared.train));
    await writeFile(join(stage, 'val.bin'), write(prepared.val));
  });
  out(JSON.stringify({
    model: modelArg,
    tokenizer: source,
    vocabSize: tokenizer.vocabSize,
    eosId: tokenizer.eosId,
    format,
    train: trainPath,
    val: valPath,
    valFraction,
    seed: a.num('seed'),
    ...prepared.stats,
    tokensPerSecond: Math.round(prepared.stats.tokens / Math.max(seconds, 1e-6)),
  }, null, 2));
}
