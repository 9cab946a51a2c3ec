// The Web Worker that owns the GPU device and the engine. It answers WorkerRequests with
// WorkerEvents (src/worker/protocol.ts); the page never touches WebGPU itself.
import { GpuContext } from '../engine/gpu/context.ts';
import { run } from '../engine/gpu/dispatch.ts';
import { matmul } from '../engine/kernels/matmul.ts';
import { describeError, type WorkerEvent, type WorkerRequest } from './protocol.ts';

let ctxPromise: Promise<GpuContext> | null = null;

function context(): Promise<GpuContext> {
  if (!ctxPromise) {
    ctxPromise = GpuContext.create(typeof navigator !== 'undefined' ? navigator.gpu : undefined);
    ctxPromise.then(
      (ctx) => ctx.lostPromise.then(() => { ctxPromise = null; }),
      () => { ctxPromise = null; },
    );
  }
  return ctxPromise;
}

function post(ev: WorkerEvent): void {
  self.postMessage(ev);
}

/** Multiplies two seeded random matrices on the GPU and compares with a CPU product. */
async function selftest(req: Extract<WorkerRequest, { type: 'selftest' }>): Promise<void> {
  const ctx = await context();
  const { M, N, K } = req;
  let s = req.seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  const a = Float32Array.from({ length: M * K }, rand);
  const b = Float32Array.from({ length: K * N }, rand);
  const t0 = performance.now();
  const ra = { buffer: ctx.createBuffer(a.byteLength, 'a', a), offset: 0, size: a.byteLength };
  const rb = { buffer: ctx.createBuffer(b.byteLength, 'b', b), offset: 0, size: b.byteLength };
  const rc = { buffer: ctx.createBuffer(M * N * 4, 'c', new Float32Array(M * N).fill(NaN)), offset: 0, size: M * N * 4 };
  await run(ctx, [await matmul(ctx, { label: 'selftest', M, N, K, a: ra, b: rb, out: rc })]);
  const c = await ctx.readF32(rc.buffer, 0, M * N);
  const ms = performance.now() - t0;
  let maxAbsError = 0;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let ref = 0;
      for (let k = 0; k < K; k++) ref += a[m * K + k] * b[k * N + n];
      const d = Math.abs(c[m * N + n] - ref);
      maxAbsError = Number.isNaN(d) ? Infinity : Math.max(maxAbsError, d);
    }
  }
  for (const r of [ra, rb, rc]) r.buffer.destroy();
  post({ type: 'selftest', M, N, K, maxAbsError, ms, sample: Array.from(c.slice(0, 4)) });
}

async function handle(req: WorkerRequest): Promise<void> {
  try {
    switch (req.type) {
      case 'probe':
        post({ type: 'adapter', report: (await context()).adapter });
        return;
      case 'selftest':
        await selftest(req);
        return;
    }
  } catch (e) {
    post({ type: 'error', ...describeError(e), request: req.type });
  }
}

self.onmessage = (e: MessageEvent<WorkerRequest>) => {
  void handle(e.data);
};
