// The one seam between the page and the engine: every message is a member of a
// discriminated union, so both sides switch on `type` with no casts.
// This module is the only one both the UI and the worker import.
import type { AdapterReport } from '../engine/gpu/context.ts';

export type { AdapterReport };
export { NO_WEBGPU_HELP } from '../engine/errors.ts';

/** Page → worker. */
export type WorkerRequest =
  | { type: 'probe' }
  | { type: 'selftest'; M: number; N: number; K: number; seed: number };

/** Worker → page. */
export type WorkerEvent =
  | { type: 'adapter'; report: AdapterReport }
  | { type: 'selftest'; M: number; N: number; K: number; maxAbsError: number; ms: number; sample: number[] }
  | { type: 'error'; name: string; message: string; request: WorkerRequest['type'] };

export function describeError(e: unknown): { name: string; message: string } {
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: 'Error', message: String(e) };
}
