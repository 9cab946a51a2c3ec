// The checkpoint benchmark: the size of `checkpoint-<step>/` and the time to write it at a model
// shape (default GPT-2 124M: V=50257, C=768, 12 layers, every tensor trained, so AdamW holds
// moments for all 124M parameters), split into reading the optimizer state and the weights back
// from the GPU and writing the folder (temporary sibling, each file flushed to disk, rename),
// plus the one-time SHA-256 fingerprint of the base weights a run computes at its start.
// One real optimizer step (B×T = 1×32) runs first so the state is that of a trained step.
//
//   npm run bench:checkpoint [-- --layers 12 --out /tmp/ckpt-bench --no-log]
// Prints a table and appends it, dated, to bench/README.md (unless --no-log).
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { nodeGpu } from '../src/cli/webgpu-node.ts';
import { GpuContext } from '../src/engine/gpu/context.ts';
import { GPT2_SMALL, type GPT2Config } from '../src/engine/model/config.ts';
import { countParams } from '../src/engine/model/params.ts';
import { GpuWeights } from '../src/engine/model/weights.ts';
import { DEFAULT_SCHEDULE } from '../src/engine/train/run-settings.ts';
import { Trainer } from '../src/engine/train/trainer.ts';
import { nodeSha256, writeCheckpointFolder } from '../src/io/node-run-checkpoint.ts';
import { CHECKPOINT_FORMAT, checkpointFiles, settingsOf, weightsFingerprint, type TrainerStateJson } from '../src/io/run-checkpoint.ts';
import { randomGpt2Params, randomTokens } from '../scripts/make-random-model.ts';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const layers = Number(arg('layers') ?? 12);
const config: GPT2Config = { ...GPT2_SMALL, nLayer: layers, embdPdrop: 0, attnPdrop: 0, residPdrop: 0 };
const B = 1;
const T = 32;

const secs = (t: number) => (performance.now() - t) / 1000;
const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;

const ctx = await GpuContext.create(await nodeGpu());
const adapter = `${ctx.adapter.vendor} ${ctx.adapter.architecture} ${ctx.adapter.description}`.trim();
console.log(`adapter: ${adapter}`);
const params = randomGpt2Params(config, 1);
let t = performance.now();
const basePrint = await weightsFingerprint(config, params, nodeSha256());
const fingerprintS = secs(t);
const weights = new GpuWeights(ctx, config, params);
const trainer = await Trainer.create(ctx, weights, {
  batch: B, seq: T, gradAccum: 1, dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1, frozen: new Set(),
  beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1,
});
const tokens = randomTokens(B * T + 1, config.vocabSize, 2);
await trainer.step([{ inputs: Uint32Array.from(tokens.subarray(0, B * T)), targets: Uint32Array.from(tokens.subarray(1, B * T + 1)) }], () => 1e-4);

t = performance.now();
const optimizer = await trainer.exportState();
const stateS = secs(t);
const cfg = {
  steps: 1, batch: B, seq: T, gradAccum: 1, lr: 1e-4, schedule: { ...DEFAULT_SCHEDULE }, lrDecay: 1, unfreeze: null, dropout: { embd: 0, attn: 0, resid: 0 },
  seed: 1, order: 'sequential' as const, frozen: new Set<number>(), beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1,
};
const state: TrainerStateJson = {
  format: CHECKPOINT_FORMAT, format_version: 1, step: 1, total_steps: 1, rows_read: B, windows: 1, dropout_step: 1, settings: settingsOf(cfg, null, 0),
  model: { source: 'random', dir: '/random' }, data: { train: ['/random'], eval: [] },
  fingerprints: { base_weights: basePrint, train_tokens: basePrint }, kernels: { precision: 'f32' }, log_history: [], created: new Date().toISOString(), writer: 'cli',
};
let readbackS = 0;
const files = checkpointFiles({
  config, optimizer, state,
  params: async (name) => {
    const t0 = performance.now();
    const r = weights.arena.range(name);
    const d = await ctx.readF32(r.buffer, r.offset, r.size / 4);
    readbackS += secs(t0);
    return d;
  },
});
const bytes = files.reduce((a, f) => a + f.size, 0);
const out = arg('out') ?? (await mkdtemp(join(tmpdir(), 'ckpt-bench-')));
t = performance.now();
const dir = await writeCheckpointFolder(out, 1, files);
const writeS = secs(t);
await rm(out, { recursive: true, force: true });
trainer.destroy();
weights.destroy();
ctx.destroy();

const rows = [
  `| shape | parameters | checkpoint | optimizer state read back | weights read back + folder written | total save | base-weights SHA-256 (once per run) |`,
  `|---|---|---|---|---|---|---|`,
  `| V=${config.vocabSize}, C=${config.nEmbd}, ${config.nLayer} layers | ${countParams(config).toLocaleString('en-US')} | ${mb(bytes)} | ${stateS.toFixed(2)} s | ` +
    `${writeS.toFixed(2)} s (of which GPU readback ${readbackS.toFixed(2)} s) | ${(stateS + writeS).toFixed(2)} s | ${fingerprintS.toFixed(2)} s |`,
];
console.log(`wrote ${dir}`);
console.log(rows.join('\n'));
if (!process.argv.includes('--no-log')) {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout
  }
  const entry = `\n### Checkpoint save, ${new Date().toISOString().slice(0, 16)}Z, commit ${commit}, ${adapter}, load average ${loadavg()[0].toFixed(1)}\n\n${rows.join('\n')}\n`;
  await appendFile(new URL('./README.md', import.meta.url), entry);
}
