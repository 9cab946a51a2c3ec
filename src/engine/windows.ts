// Training windows over one token stream: the arithmetic that the trainer, the evaluator, the
// corpus split and the float64 reference share (docs/ARCHITECTURE.md, "Windows").
//
// N tokens make W = ⌊(N − 1)/T⌋ windows of T + 1 tokens that overlap by one: window w has
// inputs tokens[w·T .. w·T + T) and targets tokens[w·T + 1 .. w·T + T], so every token but the
// last few is a target exactly once per epoch.
import { StudioError } from './errors.ts';

/** The token stream is too short to make one window of the requested context length. */
export class NotEnoughTokensError extends StudioError {}

/** A batch or window setting that cannot be used (B < 1, T < 1, a negative row ...). */
export class BatchConfigError extends StudioError {}

/** W = ⌊(N − 1)/T⌋: how many windows of context length T a stream of N tokens makes. */
export function windowCount(N: number, T: number): number {
  if (!Number.isInteger(T) || T < 1) throw new BatchConfigError(`Context length T = ${T} must be a whole number ≥ 1.`);
  return N < 1 ? 0 : Math.floor((N - 1) / T);
}
