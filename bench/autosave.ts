// The page's autosave at GPT-2 124M's shape: what one save costs the training run, against the
// training time between saves at the default interval (2 minutes), on the adapter Dawn finds here.
//
// A save is what the worker does at an interval boundary (src/worker/run.ts): a snapshot that training
// waits for, then the write (the checkpoint's files built by io/run-checkpoint.ts and written
// through the run store, io/run-store.ts, into a file system with OPFS's interface) while the
// next steps train. Two ways to take the snapshot, both measured in one process:
//   staged    the weights and AdamW moments copied in the GPU queue into mappable staging
//             buffers (Trainer.stageState); training goes on at once, the files are written from
//             the mapped copies (the page's path when the copies fit)
//   readback  the moments and the weights read back to JavaScript memory before training goes on
//             (Trainer.exportState + GpuWeights.download; the page's fallback)
// What a save costs the run: the time training waited, plus how much longer the steps that ran
// while the save was written took than the steps before any save (on a software adapter the
// "GPU" is the CPU, so the copy and the write compete with the steps; on a GPU they would not).
// Node has no OPFS, so the store writes into a folder on disk through the same interface
// (swap file renamed over the target on close, as the File System Standard's close() does).
// Reported apart: the one-off work of a run's first save (the base weights' SHA-256 fingerprint,
// through WebCrypto as the page computes it), which the interval does not repeat.
//
//   npm run bench:autosave [-- --batch 1 --seq 64 --layers 12 --steady 2 --after 2]
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
import type { HostParams } from '../src/engine/model/params.ts';
import type { TrainerState } from '../src/engine/train/trainer.ts';
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

type Mode = 'staged' | 'readback';

interface SaveRecord {
  mode: Mode;
  step: number;
  /** training blocked in the save (staging the copies, or reading back) */
  waitMs: number;
  /** from training going on to the files written */
  writeMs: number;
  bytes: number;
  stagingBytes: number;
  /** performance.now() when the write finished */
  doneAt: number;
}

async function main(): Promise<void> {
  const layers = arg('layers', 12);
  const B = arg('batch', 1);
  const T = arg('seq', 64);
  // Steps before any save (after the first, which compiles), then steps after each save: the
  // write overlaps the first of them.
  const steady = Math.max(1, arg('steady', 2));
  const after = Math.max(1, arg('after', 2));
  const modes: Mode[] = ['staged', 'readback'];
  const saveAt = modes.map((_, i) => 1 + steady + i * after);
  const steps = saveAt.at(-1)! + after;
  const config: GPT2Config = { ...GPT2_SMALL, nLayer: layers, embdPdrop: 0, attnPdrop: 0, residPdrop: 0 };
  const ctx = await GpuContext.create(await nodeGpu());
  console.log(`adapter: ${ctx.adapter.vendor} ${ctx.adapter.architecture} ${ctx.adapter.description}`);
  console.log(`shape: GPT-2 124M (V=${config.vocabSize} C=${config.nEmbd} L=${layers} H=${config.nHead}), B×T = ${B}×${T}, full fine-tuning`);
  console.log(`saves after steps ${saveAt.join(', ')} (${modes.join(', ')}), ${steps} steps`);
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
  // The first save of a run hashes the base weights once (here before training: the same cost).
  const f0 = performance.now();
  const baseFingerprint = await pageBaseFingerprint(config, (n) => weights.read(n));
  const fingerprintMs = performance.now() - f0;
  const trainTokens = tokensFingerprint(tokens, new Sha256());

  const stepEnd: number[] = []; // performance.now() at each step's report
  let last = performance.now();
  const saves: SaveRecord[] = [];
  let writing: Promise<void> = Promise.resolve();
  const files = (step: number, optimizer: TrainerState, host: HostParams) => checkpointFiles({
    config, params: host, optimizer,
    state: {
      format: CHECKPOINT_FORMAT, format_version: CHECKPOINT_FORMAT_VERSION, step, total_steps: steps, rows_read: step * B,
      windows: windowCount(tokens.length, T), dropout_step: optimizer.stepIndex, settings: settingsOf(cfg, null, 0), model: { source: 'random', dir: '' },
      data: { train: ['random'], eval: [] }, fingerprints: { base_weights: baseFingerprint, train_tokens: trainTokens },
      kernels: { precision: 'f32' }, log_history: [], created: new Date().toISOString(), writer: 'page',
    },
  });
  const write = async (step: number, optimizer: TrainerState, host: HostParams) => {
    await store.save(id, { summary: { model: 'gpt2-124M (random)', corpus: 'random', step, totalSteps: steps, state: 'running' }, checkpoint: files(step, optimizer, host) });
  };
  const save = async (snap: RunSnapshot, mode: Mode) => {
    await writing;
    const t0 = performance.now();
    let go: () => Promise<void>;
    let stagingBytes = 0;
    if (mode === 'staged') {
      const staged = await snap.stage();
      stagingBytes = staged.bytes;
      go = async () => {
        try {
          const { state, params: host } = await staged.read();
          await write(snap.step, state, host!);
        } finally {
          staged.release();
        }
      };
    } else {
      const optimizer = await snap.exportState();
      const host = await weights.download();
      go = () => write(snap.step, optimizer, host);
    }
    const t1 = performance.now();
    const rec: SaveRecord = { mode, step: snap.step, waitMs: t1 - t0, writeMs: 0, bytes: 0, stagingBytes, doneAt: 0 };
    saves.push(rec);
    writing = go().then(async () => {
      rec.doneAt = performance.now();
      rec.writeMs = rec.doneAt - t1;
      rec.bytes = (await store.list())[0].bytes;
      console.log(`save (${mode}) at step ${snap.step}: ${(rec.bytes / 2 ** 20).toFixed(0)} MiB, training waited ${s(rec.waitMs)}, written in ${s(rec.writeMs)} while training went on`);
    });
  };
  await runTraining(ctx, weights, tokens, cfg, {
    checkpointAt: (step) => saveAt.includes(step),
    onCheckpoint: async (snap) => {
      if (snap.reason === 'interval') await save(snap, modes[saveAt.indexOf(snap.step)]);
    },
    onStep: (log) => {
      const now = performance.now();
      stepEnd[log.step] = now;
      console.log(`step ${log.step}: ${s(now - last)} (loss ${log.loss.toFixed(3)})`);
      last = now;
    },
  }).finally(() => writing);
  await rm(work, { recursive: true, force: true });

  // Steps 2 … 1 + steady ran before any save: the steady step time.
  const dur = (k: number) => stepEnd[k] - stepEnd[k - 1];
  const base = Array.from({ length: steady }, (_, i) => dur(2 + i)).reduce((a, b) => a + b, 0) / steady;
  const interval = 120_000;
  const pct = (ms: number) => `${((100 * ms) / interval).toFixed(2)} %`;
  console.log('');
  console.log(`steady training step (B×T = ${B}×${T}): ${s(base)}; ${(interval / base).toFixed(1)} steps in 2 minutes`);
  console.log(`first save only: base-weights fingerprint ${s(fingerprintMs)} (+${pct(fingerprintMs)} of the first interval)`);
  console.log('');
  console.log('| snapshot | checkpoint | extra memory held | training waits | write (overlaps) | steps while writing: extra time | cost to the run | overhead at 2 min |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of saves) {
    // Steps that started before the write finished: each one's time beyond the steady step
    // (the save's wait, counted apart, is taken out).
    let extra = 0;
    for (let k = r.step + 1; k <= steps && stepEnd[k - 1] < r.doneAt; k++) extra += dur(k) - base - (k - 1 === r.step ? r.waitMs : 0);
    const cost = r.waitMs + Math.max(0, extra);
    console.log(
      `| ${r.mode} | ${(r.bytes / 2 ** 20).toFixed(0)} MiB | ${(r.stagingBytes / 2 ** 20).toFixed(0)} MiB | ${s(r.waitMs)} | ${s(r.writeMs)} | ${s(extra)} | ${s(cost)} | ` +
        `${pct(r.waitMs)} waiting, ${pct(cost)} in all |`,
    );
  }
  weights.destroy();
  ctx.device.destroy();
}

await main();
