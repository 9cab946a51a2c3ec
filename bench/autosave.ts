// The page's autosave at GPT-2 124M's shape: what one save costs against the training time
// between saves at the default interval (2 minutes), on the adapter Dawn finds here.
//
// A save is what the worker does at an interval boundary (src/worker/run.ts): the snapshot,
// which training waits for (the AdamW state read back from the GPU by Trainer.exportState, and
// the weights read back), then the write, which runs while the next steps train (the
// checkpoint's files built by io/run-checkpoint.ts and written through the run store,
// io/run-store.ts, into a file system with OPFS's interface). The overhead at the default
// interval is the snapshot's time over 2 minutes; the write's time is reported too, since on a
// software adapter it shares the CPU with the steps (on a GPU it overlaps them).
// Node has no OPFS, so the store writes into a folder on disk through the same interface
// (swap file renamed over the target on close, as the File System Standard's close() does).
// Reported apart: the one-off work of a run's first save (the base weights' SHA-256 fingerprint,
// through WebCrypto as the page computes it; the corpus token ids, a few MB), which the interval
// does not repeat.
//
//   npm run bench:autosave [-- --steps 3 --batch 1 --seq 64 --layers 12]
import { mkdtemp, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeGpu } from '../src/cli/webgpu-node.ts';
import { windowCount } from '../src/engine/windows.ts';
import { GpuContext } from '../src/engine/gpu/context.ts';
import { GPT2_SMALL, type GPT2Config } from '../src/engine/model/config.ts';
import { GpuWeights } from '../src/engine/model/weights.ts';
import type { TrainRunConfig } from '../src/engine/train/config.ts';
import { runTraining, type RunSnapshot } from '../src/engine/train/loop.ts';
import type { OpfsDirectory, OpfsFile, OpfsWritable } from '../src/io/cache.ts';
import { checkpointFiles, settingsOf, tokensFingerprint, CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION } from '../src/io/run-checkpoint.ts';
import { baseFingerprint as pageBaseFingerprint } from '../src/worker/autosave.ts';
import { RunStore } from '../src/io/run-store.ts';
import { Sha256 } from '../src/io/sha256.ts';
import { randomGpt2Params, randomTokens } from '../scripts/make-random-model.ts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

/** An OPFS-shaped folder on disk: a file's bytes go to a swap file that replaces it on close(). */
function diskDirectory(path: string): OpfsDirectory {
  const notFound = (n: string) => Object.assign(new Error(`${n} not found`), { name: 'NotFoundError' });
  const fileHandle = (p: string): OpfsFile => ({
    async getFile() {
      const { openAsBlob } = await import('node:fs');
      return Object.assign(await openAsBlob(p), { lastModified: (await stat(p)).mtimeMs });
    },
    async createWritable(): Promise<OpfsWritable> {
      const swap = `${p}.crswap`;
      const fh = await open(swap, 'w');
      return {
        async write(data) {
          let o = 0;
          while (o < data.length) o += (await fh.write(data, o, data.length - o)).bytesWritten;
        },
        async close() {
          await fh.close();
          await rename(swap, p);
        },
        async abort() {
          await fh.close();
          await rm(swap, { force: true });
        },
      };
    },
  });
  return {
    async getDirectoryHandle(name, options) {
      const p = join(path, name);
      const s = await stat(p).catch(() => null);
      if (!s) {
        if (!options?.create) throw notFound(name);
        await mkdir(p);
      }
      return diskDirectory(p);
    },
    async getFileHandle(name, options) {
      const p = join(path, name);
      const s = await stat(p).catch(() => null);
      if (!s) {
        if (!options?.create) throw notFound(name);
        await (await open(p, 'w')).close();
      }
      return fileHandle(p);
    },
    async removeEntry(name, options) {
      await rm(join(path, name), { recursive: !!options?.recursive });
    },
    async *entries() {
      for (const d of await readdir(path, { withFileTypes: true })) {
        if (!d.name.endsWith('.crswap')) yield [d.name, { kind: d.isDirectory() ? 'directory' : 'file' }] as [string, { kind: 'file' | 'directory' }];
      }
    },
  };
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  const layers = arg('layers', 12);
  const B = arg('batch', 1);
  const T = arg('seq', 64);
  const steps = Math.max(3, arg('steps', 3));
  const config: GPT2Config = { ...GPT2_SMALL, nLayer: layers, embdPdrop: 0, attnPdrop: 0, residPdrop: 0 };
  const ctx = await GpuContext.create(await nodeGpu());
  console.log(`adapter: ${ctx.adapter.vendor} ${ctx.adapter.architecture} ${ctx.adapter.description}`);
  console.log(`shape: GPT-2 124M (V=${config.vocabSize} C=${config.nEmbd} L=${layers} H=${config.nHead}), B×T = ${B}×${T}, full fine-tuning`);
  const params = randomGpt2Params(config, 1);
  const weights = new GpuWeights(ctx, config, params);
  params.clear();
  const tokens = randomTokens(B * T * steps * 2 + 1, config.vocabSize, 2);
  const work = await mkdtemp(join(tmpdir(), 'bench-autosave-'));
  const store = new RunStore(diskDirectory(work));
  const id = store.newRunId();
  const cfg: TrainRunConfig = {
    steps, batch: B, seq: T, gradAccum: 1, lr: 1e-4, schedule: { kind: 'constant', warmup: 0, minLrRatio: 0, cutFrac: 0.1, ratio: 32 }, lrDecay: 1, unfreeze: null,
    dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1, order: 'sequential', frozen: new Set(), beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1,
  };
  const stepMs: number[] = [];
  let last = performance.now();
  const saves: Array<{ exportMs: number; weightsMs: number; writeMs: number; totalMs: number; bytes: number }> = [];
  let firstOnly = { fingerprintMs: 0, tokensMs: 0 };
  let baseFingerprint = '';
  const save = async (snap: RunSnapshot) => {
    const t0 = performance.now();
    if (!baseFingerprint) {
      // First save of a run only (the weights the run started from; here those after step 1,
      // which costs the same: the hash reads every tensor once).
      baseFingerprint = await pageBaseFingerprint(config, (n) => weights.read(n));
      const t1 = performance.now();
      const trainTokens = tokensFingerprint(tokens, new Sha256());
      firstOnly = { fingerprintMs: t1 - t0, tokensMs: performance.now() - t1 };
      Object.assign(firstOnly, { trainTokens });
    }
    const t2 = performance.now();
    const optimizer = await snap.exportState();
    const t3 = performance.now();
    const host = await weights.download();
    const t3b = performance.now();
    const files = checkpointFiles({
      config, params: host, optimizer,
      state: {
        format: CHECKPOINT_FORMAT, format_version: CHECKPOINT_FORMAT_VERSION, step: snap.step, total_steps: steps, rows_read: snap.rowsRead,
        windows: windowCount(tokens.length, T), dropout_step: optimizer.stepIndex, settings: settingsOf(cfg, null, 0), model: { source: 'random', dir: '' },
        data: { train: ['random'], eval: [] }, fingerprints: { base_weights: baseFingerprint, train_tokens: tokensFingerprint(tokens.subarray(0, 1), new Sha256()) },
        kernels: { precision: 'f32' }, log_history: [], created: new Date().toISOString(), writer: 'page',
      },
    });
    await store.save(id, { summary: { model: 'gpt2-124M (random)', corpus: 'random', step: snap.step, totalSteps: steps, state: 'running' }, checkpoint: files });
    const t4 = performance.now();
    const bytes = (await store.list())[0].bytes;
    saves.push({ exportMs: t3 - t2, weightsMs: t3b - t3, writeMs: t4 - t3b, totalMs: t4 - t2, bytes });
    console.log(`save at step ${snap.step}: ${(bytes / 2 ** 20).toFixed(0)} MiB, optimizer read back ${s(t3 - t2)}, weights read back ${s(t3b - t3)}, files built and written ${s(t4 - t3b)}`);
    last = performance.now();
  };
  await runTraining(ctx, weights, tokens, cfg, {
    checkpointAt: (step) => step >= 1,
    onCheckpoint: async (snap) => {
      if (snap.reason === 'interval') await save(snap);
    },
    onStep: (log) => {
      const now = performance.now();
      stepMs.push(now - last);
      last = now;
      console.log(`step ${log.step}: ${s(stepMs.at(-1)!)} (loss ${log.loss.toFixed(3)})`);
    },
  });
  await rm(work, { recursive: true, force: true });
  // The first step includes pipeline compilation; the steady state is the rest.
  const steady = stepMs.slice(1);
  const step = steady.reduce((a, b) => a + b, 0) / steady.length;
  const later = saves.length > 1 ? saves.slice(1) : saves;
  const mean = (f: (x: (typeof saves)[number]) => number) => later.reduce((a, b) => a + f(b), 0) / later.length;
  const saveMs = mean((x) => x.totalMs);
  const snapMs = mean((x) => x.exportMs + x.weightsMs);
  const writeMs = mean((x) => x.writeMs);
  const interval = 120_000;
  console.log('');
  console.log('| measure | value |');
  console.log('|---|---|');
  console.log(`| checkpoint size (weights, Adam moments, state) | ${(saves[0].bytes / 2 ** 20).toFixed(0)} MiB |`);
  console.log(`| snapshot: Adam moments + weights read back (training waits) | ${s(snapMs)} |`);
  console.log(`| write: files built and written (while the next steps run) | ${s(writeMs)} |`);
  console.log(`| one save in all | ${s(saveMs)} |`);
  console.log(`| first save only: base-weights fingerprint | ${s(firstOnly.fingerprintMs)} |`);
  console.log(`| training step (B×T = ${B}×${T}) | ${s(step)} |`);
  console.log(`| steps in 2 minutes | ${(interval / step).toFixed(1)} |`);
  console.log(`| autosave overhead at the default 2 minutes: snapshot / 2 min | ${((100 * snapMs) / interval).toFixed(2)} % |`);
  console.log(`| the same if the write could not overlap (one CPU for both): save / 2 min | ${((100 * saveMs) / interval).toFixed(2)} % |`);
  console.log(`| first interval only, plus the fingerprint | +${((100 * firstOnly.fingerprintMs) / interval).toFixed(2)} % |`);
  weights.destroy();
  ctx.device.destroy();
}

await main();
