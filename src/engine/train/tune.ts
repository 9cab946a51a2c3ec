// The matmul tuning run: times candidate tilings (variants.ts) at a model's training shapes on
// this adapter and picks the fastest per shape class. A separate, short run (`npm run tune`, the
// page's Tune button), never part of training: a run uses a cached result or the default tiles
// (the tuning cache: src/io/tuning-cache.ts). Every tiling computes bit-identical results
// (shaders/matmul.wgsl sums each output in the same order), so the choice changes speed only.
import type { GpuContext } from '../gpu/context.ts';
import { run, whole } from '../gpu/dispatch.ts';
import { matmul } from '../kernels/matmul.ts';
import { DEFAULT_TILE, matmulClass, parseTile, tileName, tileProblem, type MatmulClass, type MatmulTile } from '../gpu/variants.ts';
import type { GPT2Config } from '../model/config.ts';

/** One matmul to time: C (M, N) = op(A) · op(B). */
export interface TuneShape {
  what: string;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
}

/**
 * Tilings tried besides the default, each with scalar and vec4 loads: smaller tiles for more
 * workgroups on short outputs (M = B·T rows), wider or taller ones for long outputs, and shorter
 * K steps. All fit WebGPU's default limits (16 KiB of workgroup memory, 256 threads). Then the
 * register tiles (shaders/matmul_reg.wgsl, no vec4 form): 16 rows by 1, 2 or 4 columns per
 * thread, and 32 rows by 1, which ran 1.3-3.8× the default on Mesa lavapipe (bench/README.md).
 */
export const TILE_CANDIDATES: readonly MatmulTile[] = [
  DEFAULT_TILE,
  parseTile('32x64x32-8x8'),
  parseTile('64x32x32-8x8'),
  parseTile('32x32x32-8x8'),
  parseTile('64x64x16-8x8'),
  parseTile('128x32x16-8x16'),
  parseTile('32x128x16-16x8'),
  parseTile('64x64x32-16x16'),
  parseTile('16x64x8-64x1-reg'),
  parseTile('16x128x8-64x1-reg'),
  parseTile('16x256x8-64x1-reg'),
  parseTile('32x64x8-64x1-reg'),
];

/** Longest side a tuning shape keeps: the LM head's vocabulary side is cut to this many rows (the class, not the size, picks the tile). */
const MAX_SIDE = 4096;

/**
 * The matmuls of one training step of `config` at B·T = `rows`: the linear layers forward, their
 * input and weight gradients, and the tied LM head (its vocabulary side cut to MAX_SIDE).
 */
export function trainingShapes(config: GPT2Config, rows: number): TuneShape[] {
  const C = config.nEmbd;
  const I = config.nInner;
  const V = Math.min(config.vocabSize, MAX_SIDE);
  const out: TuneShape[] = [];
  for (const [name, inC, outC] of [['c_attn', C, 3 * C], ['attn.c_proj', C, C], ['c_fc', C, I], ['mlp.c_proj', I, C]] as const) {
    out.push({ what: `${name} forward`, M: rows, N: outC, K: inC });
    out.push({ what: `${name} dx`, M: rows, N: inC, K: outC, transB: true });
    out.push({ what: `${name} dW`, M: inC, N: outC, K: rows, transA: true });
  }
  out.push({ what: 'LM head logits', M: rows, N: V, K: C, transB: true });
  out.push({ what: 'LM head dlnf', M: rows, N: C, K: V });
  out.push({ what: 'LM head dwte', M: V, N: C, K: rows, transA: true });
  return out;
}

export interface TuneTiming {
  cls: MatmulClass;
  tile: string;
  /** summed over the class's shapes, per run */
  ms: number;
}

export interface TuneResult {
  /** the fastest tiling per class that had shapes */
  matmul: Partial<Record<MatmulClass, MatmulTile>>;
  timings: TuneTiming[];
}

export interface TuneOptions {
  /** tilings to time exactly as given (their vec4 flag included); default TILE_CANDIDATES, each with scalar and vec4 loads (register tiles once) */
  candidates?: readonly MatmulTile[];
  /** timed runs per shape and tiling (after one untimed) */
  reps?: number;
  onProgress?: (line: string) => void;
}

/**
 * Times every candidate on every shape, per shape class, and returns the
 * fastest per class. A candidate the adapter cannot run is skipped with a note. Inputs are filled
 * with a fixed pattern; the outputs are discarded.
 */
export async function tuneMatmul(ctx: GpuContext, shapes: readonly TuneShape[], opts: TuneOptions = {}): Promise<TuneResult> {
  const reps = opts.reps ?? 3;
  const say = opts.onProgress ?? (() => {});
  const candidates: MatmulTile[] = [];
  const wanted = opts.candidates ?? TILE_CANDIDATES.flatMap((t) => (t.reg ? [t] : [{ ...t, vec4: false }, { ...t, vec4: true }]));
  for (const t of wanted) {
    const problem = tileProblem(t, ctx.limits);
    if (problem) say(`skip ${tileName(t)}: ${problem}`);
    else candidates.push(t);
  }
  const byClass = new Map<MatmulClass, TuneShape[]>();
  for (const s of shapes) {
    const cls = matmulClass(s.M, s.N, s.K, s.transA, s.transB);
    byClass.set(cls, [...(byClass.get(cls) ?? []), s]);
  }
  const result: TuneResult = { matmul: {}, timings: [] };
  for (const [cls, list] of byClass) {
    const bufs = list.map((s) => {
      const fill = (n: number) => Float32Array.from({ length: n }, (_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
      return {
        s,
        a: ctx.createBuffer(s.M * s.K * 4, 'tune.A', fill(s.M * s.K)),
        b: ctx.createBuffer(s.K * s.N * 4, 'tune.B', fill(s.K * s.N)),
        c: ctx.createBuffer(s.M * s.N * 4, 'tune.C'),
      };
    });
    let best: { tile: MatmulTile; ms: number } | null = null;
    try {
      for (const tile of candidates) {
        let ms = 0;
        for (const { s, a, b, c } of bufs) {
          const d = await matmul(ctx, { label: `tune.${s.what}`, M: s.M, N: s.N, K: s.K, a: whole(a), b: whole(b), out: whole(c), transA: s.transA, transB: s.transB, tile });
          await run(ctx, [d]); // compiles the pipeline (lazily on some drivers) and touches the memory
          const t0 = performance.now();
          await run(ctx, Array(reps).fill(d));
          ms += (performance.now() - t0) / reps;
        }
        result.timings.push({ cls, tile: tileName(tile), ms });
        say(`${cls.padEnd(8)} ${tileName(tile).padEnd(20)} ${ms.toFixed(2)} ms`);
        if (!best || ms < best.ms) best = { tile, ms };
      }
    } finally {
      for (const x of bufs) for (const buf of [x.a, x.b, x.c]) buf.destroy();
    }
    if (best) result.matmul[cls] = best.tile;
  }
  return result;
}
