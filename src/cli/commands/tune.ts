// `tune`: the short, separate matmul tuning run. Times the candidate tilings
// (src/engine/train/tune.ts) at a model's training shapes on this adapter and stores the fastest per
// shape class in the tuning cache (src/cli/tuning-file.ts), keyed by the adapter's identity.
// `train` reads that cache at its start and never tunes itself.
import { join } from 'node:path';
import { nodeGpu } from '../webgpu-node.ts';
import { GpuContext } from '../../engine/gpu/context.ts';
import { parseTile, tileName, type MatmulTile } from '../../engine/gpu/variants.ts';
import { GPT2_SMALL, type GPT2Config } from '../../engine/model/config.ts';
import { TILE_CANDIDATES, trainingShapes, tuneMatmul } from '../../engine/train/tune.ts';
import { loadConfigFile } from '../../io/node-model.ts';
import { Args, UsageError, type CommandSpec } from '../args.ts';
import { resolveModelDir } from '../model-arg.ts';
import { tuningFilePath, writeTunedTiles } from '../tuning-file.ts';

export const tuneSpec: CommandSpec = {
  name: 'tune',
  summary: 'time matmul tilings on this GPU at a model\'s training shapes and cache the fastest (train uses them)',
  usage: 'npm run cli -- tune [--model <dir|owner/name>] [--batch B --seq T] [--reps N] [--tiles T1,T2,…]',
  options: [
    { name: 'model', kind: 'string', optional: true, meta: 'dir|id', help: 'model whose shapes to time (only its config.json is read); default GPT-2 124M\'s shape' },
    { name: 'batch', kind: 'int', default: 4, help: 'batch size of the training runs to tune for' },
    { name: 'seq', kind: 'int', default: 128, help: 'sequence length of the training runs to tune for' },
    { name: 'reps', kind: 'int', default: 3, help: 'timed rounds; each round times every tiling once (in a rotating order), and each tiling\'s figure is its median round' },
    { name: 'tiles', kind: 'string', optional: true, meta: 'list', help: `tilings to try, comma-separated BMxBNxBK-TXxTY[-v4|-reg] (-v4: vec4 loads; -reg: the register-tiled kernel); default each of ${TILE_CANDIDATES.map(tileName).join(',')}, with scalar and vec4 loads where there is a choice` },
    { name: 'dry-run', kind: 'flag', help: 'time and print, but leave the cache as it is' },
  ],
  notes:
    'The cache is kernel-tuning.json in $STUDIO_CACHE (else $XDG_CACHE_HOME/webgpu-studio or ~/.cache/webgpu-studio); an entry is used only on the\n' +
    'adapter and driver that measured it. Every tiling computes bit-identical results: the choice changes speed only. A run records the tiles it\n' +
    'used in its checkpoints, and --resume keeps them.',
};

export async function runTune(a: Args, out: (line: string) => void): Promise<void> {
  const rows = a.num('batch') * a.num('seq');
  if (!(rows >= 1)) throw new UsageError('tune: --batch and --seq must be at least 1.');
  if (a.num('reps') < 1) throw new UsageError('tune: --reps must be at least 1.');
  let config: GPT2Config = GPT2_SMALL;
  let what = 'GPT-2 124M';
  if (a.has('model')) {
    const dir = await resolveModelDir(a.str('model'), { weights: false, log: out });
    config = await loadConfigFile(join(dir, 'config.json'));
    what = a.str('model');
  }
  let candidates: MatmulTile[] | undefined;
  if (a.has('tiles')) {
    try {
      candidates = a.str('tiles').split(',').filter(Boolean).map((t) => parseTile(t.trim()));
    } catch (e) {
      throw new UsageError(`tune: --tiles: ${(e as Error).message}`);
    }
    if (!candidates.length) throw new UsageError('tune: --tiles names no tiling.');
  }
  const ctx = await GpuContext.create(await nodeGpu());
  try {
    out(`adapter: ${ctx.adapter.vendor} ${ctx.adapter.architecture} ${ctx.adapter.description}`.trim());
    const shapes = trainingShapes(config, rows);
    const shapeText = `${what} (L=${config.nLayer} C=${config.nEmbd} V=${config.vocabSize}), B·T = ${rows}`;
    out(`timing ${shapes.length} matmul shapes of ${shapeText}`);
    const r = await tuneMatmul(ctx, shapes, { candidates, reps: a.num('reps'), onProgress: out });
    out('fastest per shape class:');
    for (const [cls, tile] of Object.entries(r.matmul)) {
      const mine = r.timings.filter((t) => t.cls === cls);
      const best = Math.min(...mine.map((t) => t.ms));
      const dflt = mine.find((t) => t.tile === tileName(TILE_CANDIDATES[0]))?.ms;
      out(`  ${cls.padEnd(8)} ${tileName(tile).padEnd(20)} ${best.toFixed(2)} ms${dflt ? ` (default ${dflt.toFixed(2)} ms, ${(dflt / best).toFixed(2)}×)` : ''}`);
    }
    if (a.flag('dry-run')) {
      out('--dry-run: the cache is unchanged');
      return;
    }
    const path = tuningFilePath();
    await writeTunedTiles(ctx.adapter, r.matmul, shapeText, out, path);
    out(`saved to ${path}`);
  } finally {
    ctx.destroy();
  }
}
