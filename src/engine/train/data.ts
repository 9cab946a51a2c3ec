// Training windows and batches from one token stream (docs/ARCHITECTURE.md, Windows).
//
// N tokens make W = ⌊(N − 1)/T⌋ windows of T + 1 tokens that overlap by one: window w has
// inputs tokens[w·T .. w·T + T) and targets tokens[w·T + 1 .. w·T + T], so every token but the
// last few is a target exactly once per epoch. Rows are counted from the start of training
// (j = 0, 1, …, every micro-batch row of every optimizer step): in sequential order row j reads
// window j mod W; shuffled, row j reads permutation(seed, e)[j mod W] with epoch e = ⌊j / W⌋,
// a fresh seeded permutation per epoch. A run resumed at row j therefore reads what an
// uninterrupted run would have.
import { SeededRng } from '../random.ts';
import { BatchConfigError, NotEnoughTokensError, windowCount } from '../windows.ts';

/**
 * A seeded uniform permutation of 0 … W−1 (Fisher–Yates, Knuth TAOCP vol. 2, algorithm 3.4.2P),
 * one independent random stream per epoch.
 */
export function epochPermutation(W: number, seed: number, epoch: number): Uint32Array {
  const perm = new Uint32Array(W); // (W,)
  for (let i = 0; i < W; i++) perm[i] = i;
  const rng = new SeededRng(seed, epoch);
  for (let i = W - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

export interface WindowSamplerOptions {
  /** The token stream (N,); read, never copied or changed. */
  tokens: ArrayLike<number>;
  /** T: context length, tokens per window row. */
  T: number;
  /** Read windows in a seeded random order per epoch instead of in corpus order. */
  shuffle: boolean;
  /** Seed of the shuffled order; ignored when reading in order. */
  seed: number;
  /** Row to start at (a resumed run passes the rows it has read); default 0. */
  startRow?: number;
}

/** One micro-batch. The arrays are reused: valid until the next call to nextBatch. */
export interface SampledBatch {
  inputs: Uint32Array; // (B, T)
  targets: Uint32Array; // (B, T)
  /** (B,) the window each row came from */
  windows: number[];
}

export class WindowSampler {
  readonly T: number;
  /** W: windows per epoch */
  readonly W: number;
  readonly shuffle: boolean;
  readonly seed: number;
  private readonly tokens: ArrayLike<number>;
  private row: number;
  private permEpoch = -1;
  private perm: Uint32Array | null = null; // (W,) permutation of the cached epoch
  private batch: SampledBatch | null = null;

  constructor(o: WindowSamplerOptions) {
    this.T = o.T;
    this.W = windowCount(o.tokens.length, o.T);
    if (this.W < 1) {
      throw new NotEnoughTokensError(
        `The corpus has ${o.tokens.length} tokens, but one training window of context length ${o.T} needs ${o.T + 1}. ` +
          `Add more text or lower the context length.`,
      );
    }
    if (o.shuffle && (!Number.isSafeInteger(o.seed) || o.seed < 0)) {
      throw new BatchConfigError(`Shuffle seed ${o.seed} must be a whole number ≥ 0.`);
    }
    this.tokens = o.tokens;
    this.shuffle = o.shuffle;
    this.seed = o.seed;
    this.row = 0;
    this.seek(o.startRow ?? 0);
  }

  /** j: rows read since the start of training (the next row to read). */
  get position(): number {
    return this.row;
  }

  /** Moves to row j, as a run that has read j rows would be. */
  seek(j: number): void {
    checkRow(j);
    this.row = j;
  }

  /** The epoch row j falls in: ⌊j / W⌋. */
  epochAt(j: number): number {
    checkRow(j);
    return Math.floor(j / this.W);
  }

  /** The window row j reads. */
  windowAt(j: number): number {
    const e = this.epochAt(j);
    const i = j - e * this.W;
    if (!this.shuffle) return i;
    if (this.permEpoch !== e) {
      this.perm = epochPermutation(this.W, this.seed, e);
      this.permEpoch = e;
    }
    return this.perm![i];
  }

  /** The next B rows: inputs and targets (B, T), written into arrays reused between calls. */
  nextBatch(B: number): SampledBatch {
    if (!Number.isInteger(B) || B < 1) throw new BatchConfigError(`Batch size ${B} must be a whole number ≥ 1.`);
    const T = this.T;
    if (!this.batch || this.batch.windows.length !== B) {
      this.batch = { inputs: new Uint32Array(B * T), targets: new Uint32Array(B * T), windows: new Array<number>(B).fill(0) };
    }
    const { inputs, targets, windows } = this.batch;
    const tok = this.tokens;
    for (let b = 0; b < B; b++) {
      const w = this.windowAt(this.row + b);
      windows[b] = w;
      const base = w * T;
      const o = b * T;
      for (let t = 0; t < T; t++) {
        inputs[o + t] = tok[base + t];
        targets[o + t] = tok[base + t + 1];
      }
    }
    this.row += B;
    return this.batch;
  }
}

function checkRow(j: number): void {
  if (!Number.isSafeInteger(j) || j < 0) throw new BatchConfigError(`Row ${j} must be a whole number ≥ 0.`);
}
