// packSpans (src/engine/gpu/dispatch.ts): how the multi-tensor kernels (AdamW, the gradient
// norm) group tensor ranges into one binding per list. Plain objects stand in for GPU buffers:
// the rule looks only at buffer identity, offsets and sizes.
import { describe, expect, it } from 'vitest';
import { packSpans, type BufferRange } from '../../../src/engine/gpu/dispatch.ts';

const buf = (label: string) => ({ label }) as unknown as GPUBuffer;
const r = (buffer: GPUBuffer, offset: number, size: number): BufferRange => ({ buffer, offset, size });

describe('packSpans', () => {
  const P = buf('params');
  const G = buf('grads');

  it('puts consecutive ranges of the same buffers in one span, offsets in floats from its start', () => {
    const items = [
      [r(P, 256, 40), r(G, 0, 40)],
      [r(P, 512, 400), r(G, 256, 400)],
      [r(P, 1024, 8), r(G, 768, 8)],
    ];
    const spans = packSpans(items, 1 << 20);
    expect(spans).toHaveLength(1);
    expect(spans[0].items).toEqual([0, 1, 2]);
    expect(spans[0].ranges).toEqual([r(P, 256, 1024 + 8 - 256), r(G, 0, 768 + 8)]);
    expect(spans[0].at).toEqual([[0, 0], [64, 64], [192, 192]]);
  });

  it('starts a new span at the binding limit, at another buffer, and going backwards', () => {
    const P2 = buf('params2');
    const items = [
      [r(P, 0, 600), r(G, 0, 600)],
      [r(P, 768, 400), r(G, 768, 400)], // ends at 1168 > 1024: a new span
      [r(P2, 0, 16), r(G, 1280, 16)], // another param buffer
      [r(P2, 256, 16), r(G, 1024, 16)], // grads go backwards
    ];
    const spans = packSpans(items, 1024);
    expect(spans.map((s) => s.items)).toEqual([[0], [1], [2], [3]]);
    for (const s of spans) for (const b of s.ranges) expect(b.size).toBeLessThanOrEqual(1024);
  });

  it('never lets two lists of one span overlap in the same buffer (a writable binding may not alias)', () => {
    const M = buf('moments');
    // m and v of two tensors interleaved in one buffer: m0 v0 m1 v1
    const items = [
      [r(M, 0, 64), r(M, 256, 64)],
      [r(M, 512, 64), r(M, 768, 64)],
    ];
    const spans = packSpans(items, 1 << 20);
    expect(spans.map((s) => s.items)).toEqual([[0], [1]]);
    // m0 m1 then v0 v1: disjoint spans, one dispatch
    const apart = packSpans([[r(M, 0, 64), r(M, 512, 64)], [r(M, 256, 64), r(M, 768, 64)]], 1 << 20);
    expect(apart.map((s) => s.items)).toEqual([[0, 1]]);
  });
});
