// The matmul tuning run: times candidate tilings (variants.ts) at a model's training shapes on
// this adapter and picks the fastest per shape class. A separate, short run (`npm run tune`, the
// page's Tune button), never part of training: a run uses a cached result or the default tiles
// (the tuning cache: src/io/tuning-cache.ts). Every tiling computes bit-identical results
// (shaders/matmul.wgsl sums each output in the same order), so the choice changes speed only.
import type { GpuContext } from '../gpu/context.ts';
import { run, whole, type Dispatch } from '../gpu/dispatch.ts';
import { median } from '../gpu/profile.ts';
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
  /** the median over the rounds of one run of the class's shapes (each once, one submit) */
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
  /** timed rounds (after one untimed run of each candidate); each round times every candidate once */
  reps?: number;
  onProgress?: (line: string) => void;
}

/**
 * Times `count` candidates in `rounds` interleaved rounds: each round times every candidate once,
 * starting one further along each round (round r: r, r+1, …, wrapping), and each candidate's
 * figure is the median of its rounds. Timing candidates one after another would give a load that
 * drifts during the run (another process, a CPU adapter sharing its cores, clocks) to whichever
 * ran in the quiet part; interleaving spreads the drift over all of them, the rotation keeps any
 * of them from always running first or last, and the median drops a round that a hiccup spoiled.
 */
export async function timeInterleaved(count: number, rounds: number, timeOne: (i: number) => Promise<number>): Promise<number[]> {
  const times: number[][] = Array.from({ length: count }, () => []);
  for (let r = 0; r < rounds; r++) {
    for (let j = 0; j < count; j++) {
      const i = (r + j) % count;
      times[i].push(await timeOne(i));
    }
  }
  return times.map(median);
}

/**
 * Times every candidate on the shapes of each shape class, in interleaved rounds
 * (timeInterleaved), and returns the fastest per class. Inputs are filled with a fixed pattern;
 * the outputs are discarded. Every candidate is built and run once, untimed, before the first
 * round (pipeline compilation, which takes seconds for some on a CPU adapter, and first touch of
 * the memory).
 */
export async function tuneMatmul(ctx: GpuContext, shapes: readonly TuneShape[], opts: TuneOptions = {}): Promise<TuneResult> {
  const reps = opts.reps ?? 3;
  if (!(reps >= 1)) throw new RangeError(`tuneMatmul: reps must be at least 1 (got ${reps})`);
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
    if (!candidates.length) break;
    const bufs = list.map((s) => {
      const fill = (n: number) => Float32Array.from({ length: n }, (_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
      return {
        s,
        a: ctx.createBuffer(s.M * s.K * 4, 'tune.A', fill(s.M * s.K)),
        b: ctx.createBuffer(s.K * s.N * 4, 'tune.B', fill(s.K * s.N)),
        c: ctx.createBuffer(s.M * s.N * 4, 'tune.C'),
      };
    });
    try {
      const runs: Dispatch[][] = [];
      for (const tile of candidates) {
        const ds: Dispatch[] = [];
        for (const { s, a, b, c } of bufs) {
          ds.push(await matmul(ctx, { label: `tune.${s.what}`, M: s.M, N: s.N, K: s.K, a: whole(a), b: whole(b), out: whole(c), transA: s.transA, transB: s.transB, tile }));
        }
        await run(ctx, ds); // compiles the pipelines (lazily on some drivers) and touches the memory
        runs.push(ds);
      }
      say(`${cls}: ${candidates.length} tilings × ${list.length} shapes, ${reps} interleaved round${reps === 1 ? '' : 's'}`);
      const ms = await timeInterleaved(candidates.length, reps, async (i) => {
        const t0 = performance.now();
        await run(ctx, runs[i]);
        return performance.now() - t0;
      });
      let best = 0;
      candidates.forEach((tile, i) => {
        result.timings.push({ cls, tile: tileName(tile), ms: ms[i] });
        say(`${cls.padEnd(8)} ${tileName(tile).padEnd(20)} ${ms[i].toFixed(2)} ms`);
        if (ms[i] < ms[best]) best = i;
      });
      result.matmul[cls] = candidates[best];
    } finally {
      for (const x of bufs) for (const buf of [x.a, x.b, x.c]) buf.destroy();
    }
  }
  return result;
}
