// Depth groups and the two ULMFiT training methods built on them: discriminative learning rates
// and gradual unfreezing (Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text
// Classification", sections 3.2 and 3.3).
//
// A GPT-2 with L blocks has L + 2 depth groups (src/engine/model/params.ts): the embeddings
// (wte, wpe) at 0, block i at i + 1 and the final LayerNorm ln_f at L + 1, the top.
import { StudioError } from '../errors.ts';

/** A freezing or learning-rate setting that does not fit the model (group out of range, f < 1 ...). */
export class GroupConfigError extends StudioError {}

function checkLayers(L: number): void {
  if (!Number.isInteger(L) || L < 1) throw new GroupConfigError(`Layer count ${L} must be a positive whole number.`);
}

/** Number of depth groups of a model with L blocks: L + 2. */
export function depthGroupCount(L: number): number {
  checkLayers(L);
  return L + 2;
}

/** The name a user sees for group g: 'embeddings', 'block i' or 'ln_f'. */
export function groupLabel(L: number, g: number): string {
  checkLayers(L);
  if (!Number.isInteger(g) || g < 0 || g > L + 1) {
    throw new GroupConfigError(`Depth group ${g} does not exist: a model with ${L} blocks has groups 0 … ${L + 1}.`);
  }
  if (g === 0) return 'embeddings';
  if (g === L + 1) return 'ln_f';
  return `block ${g - 1}`;
}

/**
 * Discriminative learning rates: the factor on the base rate for each depth group,
 * lr_d = lr / f^(L+1−d), so the top group (ln_f) trains at lr and each level down is f times
 * slower. ULMFiT's f = 2.6 was tuned for a 3-layer LSTM's four groups; with GPT-2's fourteen it
 * would leave the embeddings at lr / 2.6^13, so transformer practice ("layer-wise learning-rate
 * decay") uses a per-layer decay of 0.95 … 0.75, i.e. f = 1/0.95 … 1/0.75 ≈ 1.05 … 1.33.
 * f = 1 turns the method off (every group at lr).
 */
export function groupLrFactors(L: number, f: number): Float64Array {
  checkLayers(L);
  if (!Number.isFinite(f) || f < 1) {
    // A value below 1 is most likely a layer-wise decay rate (0.9), the inverse convention.
    const hint = f > 0 && f < 1 ? ` For a layer-wise decay rate of ${f} use f = 1/${f} = ${(1 / f).toFixed(4)}.` : '';
    throw new GroupConfigError(
      `Discriminative factor f = ${f} must be ≥ 1 (1 turns it off): the rate is divided by f once per level down.${hint}`,
    );
  }
  const out = new Float64Array(L + 2); // (L + 2,) one factor per depth group
  for (let d = 0; d <= L + 1; d++) out[d] = 1 / f ** (L + 1 - d);
  return out;
}

/** A printable table of the rate each depth group trains at, top group first. */
export function describeGroupRates(L: number, lr: number, f: number): string {
  const factors = groupLrFactors(L, f);
  const rows = ['group        lr'];
  for (let d = L + 1; d >= 0; d--) rows.push(`${groupLabel(L, d).padEnd(12)} ${(lr * factors[d]).toExponential(3)}`);
  return rows.join('\n');
}

export interface UnfreezeOptions {
  /** L: transformer blocks */
  L: number;
  /** k: groups open at step 0, counted from the top (ULMFiT opens only the last layer: 1). */
  start: number;
  /** N: optimizer steps between two openings (ULMFiT opens one more group per epoch). */
  every: number;
  /** Depth groups the user froze: they never train, even when their turn comes. */
  userFrozen: ReadonlySet<number>;
}

/**
 * When each depth group starts training under gradual unfreezing. Turns are given by depth
 * alone: the k top groups have their turn at step 0 and group at rank r from the top
 * (r ≥ k) at step (r − k + 1)·N. A group the user froze keeps its turn, so the turns of the
 * others do not move, but it stays frozen; its `openAt` is null.
 */
export class UnfreezeSchedule {
  readonly L: number;
  /** (L + 2,) the optimizer step at which each group opens; null: never (user froze it). */
  readonly openAt: ReadonlyArray<number | null>;

  constructor(L: number, openAt: Array<number | null>) {
    this.L = L;
    this.openAt = openAt;
  }

  /** Depth groups that train at 0-based optimizer step `step`, ascending. */
  openGroupsAt(step: number): number[] {
    const out: number[] = [];
    this.openAt.forEach((s, g) => {
      if (s !== null && s <= step) out.push(g);
    });
    return out;
  }

  /** Groups that open exactly at `step`: they need fresh AdamW state (step count 0) now. */
  openingAt(step: number): number[] {
    const out: number[] = [];
    this.openAt.forEach((s, g) => {
      if (s === step) out.push(g);
    });
    return out;
  }

  /** The first step at which some group trains; null when the user froze every group. */
  firstTrainingStep(): number | null {
    let first: number | null = null;
    for (const s of this.openAt) if (s !== null && (first === null || s < first)) first = s;
    return first;
  }

  /** A table of group → opening step, top group first, for the log and the settings panel. */
  describe(): string {
    const rows = ['group        opens at step'];
    for (let g = this.L + 1; g >= 0; g--) {
      const s = this.openAt[g];
      rows.push(`${groupLabel(this.L, g).padEnd(12)} ${s === null ? 'never (frozen)' : String(s)}`);
    }
    const first = this.firstTrainingStep();
    if (first === null) rows.push('Every group is frozen: nothing will train.');
    else if (first > 0) rows.push(`No group trains before step ${first}: the top groups are all frozen.`);
    return rows.join('\n');
  }
}

export function unfreezeSchedule(o: UnfreezeOptions): UnfreezeSchedule {
  checkLayers(o.L);
  const groups = o.L + 2;
  if (!Number.isInteger(o.start) || o.start < 1) {
    throw new GroupConfigError(`Gradual unfreezing must open at least one group at the start (got ${o.start}); ULMFiT opens 1.`);
  }
  if (!Number.isInteger(o.every) || o.every < 1) {
    throw new GroupConfigError(`Gradual unfreezing interval ${o.every} must be a whole number of optimizer steps ≥ 1.`);
  }
  for (const g of o.userFrozen) {
    if (!Number.isInteger(g) || g < 0 || g >= groups) {
      throw new GroupConfigError(`Frozen group ${g} does not exist: a model with ${o.L} blocks has groups 0 … ${groups - 1}.`);
    }
  }
  const openAt: Array<number | null> = [];
  for (let d = 0; d < groups; d++) {
    const rank = o.L + 1 - d; // 0 for ln_f, L + 1 for the embeddings
    const turn = rank < o.start ? 0 : (rank - o.start + 1) * o.every;
    openAt.push(o.userFrozen.has(d) ? null : turn);
  }
  return new UnfreezeSchedule(o.L, openAt);
}
