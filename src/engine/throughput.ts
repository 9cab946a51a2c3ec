// Tokens per second: the one throughput formula that training, evaluation and generation report
// (engine-level, so that generation does not depend on evaluation).

/** Tokens per second for `tokens` processed in `ms` milliseconds; 0 when no time has passed. */
export function tokensPerSecond(tokens: number, ms: number): number {
  return ms > 0 ? (tokens * 1000) / ms : 0;
}
