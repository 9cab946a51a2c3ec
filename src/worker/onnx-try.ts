// "Try the export": the model as the ONNX export writes it (io/onnx.ts, float32) runs in
// onnxruntime-web inside the worker — the WebGPU execution provider where the browser has WebGPU,
// else WASM — and continues a prompt greedily next to our engine, token for token, the way
// transformers.js drives the same file: the prompt with an empty past, then one token per call
// with the returned present.* as past_key_values. Both speeds are new tokens per second over the
// whole call (prompt included), as the engine's generator reports them.
import { StudioError } from '../engine/errors.ts';
import { GREEDY, type Generator } from '../engine/generate/generator.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { concatChunks, gpt2OnnxFiles, type OnnxParamReader } from '../io/onnx.ts';
import type { HostParams } from '../engine/model/params.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import { loadOrt, type Ort } from './onnx-runtime.ts';
import type { TryExportResult } from './protocol.ts';

/** onnxruntime-web could not run the exported model. */
export class OnnxRuntimeError extends StudioError {}

export type OnnxProvider = 'webgpu' | 'wasm';

export interface OnnxSession {
  provider: OnnxProvider;
  /** bytes of the float32 .onnx file */
  bytes: number;
  greedy(prompt: number[], maxNew: number, eos: number | null): Promise<{ tokens: number[]; tokensPerSec: number }>;
  release(): Promise<void>;
}

function argmax(a: Float32Array, from: number, V: number): number {
  let best = 0;
  for (let v = 1; v < V; v++) if (a[from + v] > a[from + best]) best = v;
  return best;
}

/** Builds the ONNX model of these weights and opens it in onnxruntime-web (WebGPU first when `webgpu`). */
async function openOnnxSession(config: GPT2Config, params: HostParams | OnnxParamReader, webgpu: boolean): Promise<OnnxSession> {
  const [file] = await gpt2OnnxFiles(config, params);
  const bytes = concatChunks(file);
  const ort = await loadOrt();
  let session: Awaited<ReturnType<Ort['InferenceSession']['create']>> | null = null;
  let provider: OnnxProvider = 'wasm';
  const errors: string[] = [];
  // With WebGPU the keys and values stay on the GPU between calls (fed back as they came out, as
  // transformers.js v3 does with preferredOutputLocation 'gpu-buffer' for present.*);
  // only the logits come back to the CPU.
  const presentNames = Array.from({ length: config.nLayer }, (_, l) => [`present.${l}.key`, `present.${l}.value`]).flat();
  const onGpu = Object.fromEntries(presentNames.map((n) => [n, 'gpu-buffer' as const]));
  for (const p of webgpu ? (['webgpu', 'wasm'] as const) : (['wasm'] as const)) {
    try {
      // A copy each time: a session may take ownership of the buffer it is given.
      session = await ort.InferenceSession.create(bytes.slice(), {
        executionProviders: [p],
        logSeverityLevel: 3,
        ...(p === 'webgpu' ? { preferredOutputLocation: onGpu } : {}),
      });
      provider = p;
      break;
    } catch (e) {
      errors.push(`${p}: ${(e as Error)?.message ?? String(e)}`);
    }
  }
  if (!session) throw new OnnxRuntimeError(`onnxruntime-web could not load the exported model (${errors.join('; ')}).`);
  const s = session;
  const NH = config.nHead, HS = config.nEmbd / config.nHead, V = config.vocabSize;
  const int64 = (values: number[]) => new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), [1, values.length]);
  return {
    provider,
    bytes: bytes.byteLength,
    async greedy(prompt, maxNew, eos) {
      const t0 = performance.now();
      const tokens: number[] = [];
      let past: Record<string, { dispose(): void }> | null = null;
      let pos = 0;
      let feed = prompt;
      while (tokens.length < maxNew) {
        const feeds: Record<string, unknown> = {
          input_ids: int64(feed),
          attention_mask: int64(new Array(pos + feed.length).fill(1)),
          position_ids: int64(feed.map((_, i) => pos + i)),
        };
        for (let l = 0; l < config.nLayer; l++) {
          for (const kv of ['key', 'value']) {
            feeds[`past_key_values.${l}.${kv}`] = past ? past[`present.${l}.${kv}`] : new ort.Tensor('float32', new Float32Array(0), [1, NH, 0, HS]);
          }
        }
        const out = await s.run(feeds as Parameters<typeof s.run>[0]);
        // The past just fed is replaced by the present returned: free GPU copies as we go.
        if (past && provider === 'webgpu') for (const n of presentNames) past[n].dispose();
        const logits = out.logits.data as Float32Array;
        const next = argmax(logits, (feed.length - 1) * V, V);
        tokens.push(next);
        pos += feed.length;
        feed = [next];
        past = out;
        if (eos !== null && next === eos) break;
      }
      if (past && provider === 'webgpu') for (const n of presentNames) past[n].dispose();
      const ms = performance.now() - t0;
      return { tokens, tokensPerSec: (1000 * tokens.length) / ms };
    },
    release: () => s.release(),
  };
}

export interface TryExportInput {
  config: GPT2Config;
  /** the weights the export holds (LoRA merged) */
  params: HostParams | OnnxParamReader;
  /** try onnxruntime-web's WebGPU provider first */
  webgpu: boolean;
  /** the engine's generator of the same weights */
  generator: Generator;
  tokenizer: Tokenizer;
  prompt: string;
  /** the prompt's ids (BOS for an empty prompt) */
  ids: number[];
  maxNew: number;
}

/** Continues `ids` greedily with the engine and with the ONNX export, and says where they first differ. */
export async function tryOnnxExport(t: TryExportInput): Promise<TryExportResult> {
  const session = await openOnnxSession(t.config, t.params, t.webgpu);
  try {
    const eos = t.config.eosTokenId;
    const ours = await t.generator.generate(t.ids, { maxNewTokens: t.maxNew, sampling: GREEDY, eosTokenId: eos });
    const theirs = await session.greedy(t.ids, t.maxNew, eos);
    let first: number | null = null;
    for (let i = 0; i < Math.max(ours.tokens.length, theirs.tokens.length); i++) {
      if (ours.tokens[i] !== theirs.tokens[i]) {
        first = i;
        break;
      }
    }
    const text = (ids: number[]) => t.tokenizer.decode(ids.filter((id) => id < t.tokenizer.vocabSize));
    return {
      prompt: t.prompt,
      provider: session.provider,
      onnxBytes: session.bytes,
      engine: { tokens: ours.tokens, text: text(ours.tokens), tokensPerSec: ours.tokensPerSecond },
      onnx: { tokens: theirs.tokens, text: text(theirs.tokens), tokensPerSec: theirs.tokensPerSec },
      firstDifference: first,
    };
  } finally {
    await session.release();
  }
}
