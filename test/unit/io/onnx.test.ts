// The ONNX export (src/io/onnx.ts) checked by runtimes that are not ours: onnxruntime-node 1.14
// and onnxruntime-web (its wasm backend, in Node) give the float64 reference's logits (within
// 1e-4 of the largest) for a prompt with no past and then for each next token fed with the
// returned past, at the golden tiny shape (V=311) and the demo shape (GPT-2's vocabulary); the
// attention mask hides padded keys; the 8-bit file agrees top-1 with the float32 one on a
// validation text; onnx.checker (Debian's python3-onnx) passes with full_check; past the
// external-data threshold the weights move to `<name>_data` and still load.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { beforeAll, describe, expect, it } from 'vitest';
import type { GPT2Config } from '../../../src/engine/model/config.ts';
import type { HostParams } from '../../../src/engine/model/params.ts';
import { refForward, toF64Params } from '../../../src/engine/reference/gpt2.ts';
import { loadModelDir } from '../../../src/io/node-model.ts';
import { concatChunks, gpt2OnnxFiles, quantizePerChannel, type OnnxFile } from '../../../src/io/onnx.ts';
import { tokenizerFromModelFiles } from '../../../src/io/tokenizer.ts';
import { relErr } from '../../helpers/numeric.ts';
import { argmaxRow, ortLogits, relToLargest, type OrtLike, type SessionLike } from '../../helpers/onnx.ts';

const { onnx } = onnxProto as unknown as typeof import('onnx-proto');
const TINY = new URL('../../goldens/gpt2-tiny/model/', import.meta.url).pathname;
const DEMO = new URL('../../../public/models/demo-gpt2/', import.meta.url).pathname;
const PYTHON = '/usr/bin/python3';

ortWeb.env.wasm.numThreads = 1;

interface Case {
  name: string;
  config: GPT2Config;
  params: HostParams;
  dir: string;
  f32: OnnxFile;
  q8: OnnxFile;
}

function refLogits(c: Case, ids: number[]): Float64Array {
  return refForward(c.config, toF64Params(c.params), Int32Array.from(ids), null, 1, ids.length).logits;
}

async function makeCase(name: string, modelDir: string, weightScale = 1): Promise<Case> {
  const { config, params } = await loadModelDir(modelDir);
  // Larger matrices drive GELU and the softmax far from their linear ranges, where a wrong
  // constant or a missing term shows in the logits (small random weights hide them).
  if (weightScale !== 1) for (const [n, t] of params) if (/weight$/.test(n) && !/ln_/.test(n)) params.set(n, t.map((v) => v * weightScale));
  const [f32] = await gpt2OnnxFiles(config, params);
  const [q8] = await gpt2OnnxFiles(config, params, { quantize: true });
  const dir = mkdtempSync(join(tmpdir(), `onnx-${name}-`));
  writeFileSync(join(dir, f32.name), concatChunks(f32));
  writeFileSync(join(dir, q8.name), concatChunks(q8));
  return { name, config, params, dir, f32, q8 };
}

const cases: Case[] = [];
beforeAll(async () => {
  cases.push(await makeCase('tiny', TINY), await makeCase('tiny, weights ×6', TINY, 6), await makeCase('demo', DEMO));
});

const runtimes: Array<{ name: string; ort: OrtLike; open(path: string): Promise<SessionLike> }> = [
  { name: 'onnxruntime-node 1.14', ort: ortNode as unknown as OrtLike, open: async (p) => (await ortNode.InferenceSession.create(p)) as unknown as SessionLike },
  {
    name: 'onnxruntime-web (wasm)',
    ort: ortWeb as unknown as OrtLike,
    open: async (p) => (await ortWeb.InferenceSession.create(readFileSync(p), { executionProviders: ['wasm'] })) as unknown as SessionLike,
  },
];

describe.each(['tiny', 'tiny, weights ×6', 'demo'])('%s', (which) => {
  const c = () => cases.find((x) => x.name === which)!;
  // prompt of 5 tokens, then 4 more one at a time with the returned past
  const ids = (V: number) => [11, 3, 290, 7, 101, 64, 5, 250, 42].map((t) => (t * 7919) % V);

  it.each(runtimes.map((r) => [r.name, r] as const))('%s: logits of every position match the float64 reference', async (_, rt) => {
    const { config, dir, f32 } = c();
    const s = await rt.open(join(dir, f32.name));
    const seq = ids(config.vocabSize);
    const { logits, pastDims } = await ortLogits(rt.ort, s, config, seq, 5);
    expect(pastDims).toEqual([1, config.nHead, seq.length, config.nEmbd / config.nHead]);
    const ref = refLogits(c(), seq);
    expect(relToLargest(logits, ref)).toBeLessThan(1e-4);
    // and, as a whole, as close as float32 gets (‖got − ref‖ / ‖ref‖)
    expect(relErr(logits, ref)).toBeLessThan(1e-5);
    // the cached steps are the ones after the prompt: check them on their own too
    const V = config.vocabSize;
    expect(relToLargest(logits.subarray(5 * V), ref.subarray(5 * V))).toBeLessThan(1e-4);
  });

  it('hides keys the attention mask marks as padding', async () => {
    const { config, dir, f32 } = c();
    const s = await ortNode.InferenceSession.create(join(dir, f32.name));
    const V = config.vocabSize;
    const seq = ids(V).slice(0, 4);
    const feeds = (toks: number[], mask: number[], pos: number[]) => {
      const f: Record<string, ortNode.Tensor> = {
        input_ids: new ortNode.Tensor('int64', BigInt64Array.from(toks.map(BigInt)), [1, toks.length]),
        attention_mask: new ortNode.Tensor('int64', BigInt64Array.from(mask.map(BigInt)), [1, mask.length]),
        position_ids: new ortNode.Tensor('int64', BigInt64Array.from(pos.map(BigInt)), [1, pos.length]),
      };
      for (let l = 0; l < config.nLayer; l++) {
        for (const kv of ['key', 'value']) f[`past_key_values.${l}.${kv}`] = new ortNode.Tensor('float32', new Float32Array(0), [1, config.nHead, 0, config.nEmbd / config.nHead]);
      }
      return f;
    };
    // a left-padded row: one pad token masked out, positions counted over the real tokens (as
    // transformers.js' preparePositionIds does) — the real tokens' logits are the unpadded ones
    const padded = await s.run(feeds([0, ...seq], [0, 1, 1, 1, 1], [1, 0, 1, 2, 3]));
    const ref = refLogits(c(), seq);
    const got = (padded.logits.data as Float32Array).subarray(V);
    expect(relToLargest(got, ref)).toBeLessThan(1e-4);
    // and the mask is not ignored: unmasked, the pad token changes them
    const unmasked = await s.run(feeds([0, ...seq], [1, 1, 1, 1, 1], [1, 0, 1, 2, 3]));
    expect(relToLargest((unmasked.logits.data as Float32Array).subarray(V), ref)).toBeGreaterThan(1e-3);
  });
});

describe('the 8-bit file', () => {
  it('is a third of the float32 file or less at the demo shape and agrees top-1 on ≥ 95% of a validation text', async () => {
    const c = cases.find((x) => x.name === 'demo')!;
    expect(c.q8.size).toBeLessThan(c.f32.size / 3);
    const { tokenizer } = await tokenizerFromModelFiles([{ name: 'tokenizer.json', bytes: async () => new Uint8Array(readFileSync(join(DEMO, 'tokenizer.json'))) }]);
    const text = readFileSync(new URL('../../fixtures/corpora/dracula-excerpt.txt', import.meta.url), 'utf8').slice(5000, 9000);
    const seq = tokenizer.encode(text).slice(0, 200);
    expect(seq.length).toBe(200);
    const V = c.config.vocabSize;
    const run = async (f: OnnxFile) => {
      const session = (await ortNode.InferenceSession.create(join(c.dir, f.name))) as unknown as SessionLike;
      return (await ortLogits(ortNode as unknown as OrtLike, session, c.config, seq, seq.length)).logits;
    };
    const [a, b] = [await run(c.f32), await run(c.q8)];
    let agree = 0;
    for (let r = 0; r < seq.length; r++) if (argmaxRow(a, r, V) === argmaxRow(b, r, V)) agree++;
    expect(agree / seq.length).toBeGreaterThanOrEqual(0.95);
    // and it is a different model (weights really are 8-bit), not a copy of the float32 one
    expect(relToLargest(b, a)).toBeGreaterThan(1e-5);
  });

  it('quantizes each output channel symmetrically: dequantized values within half a step', () => {
    const w = Float32Array.from({ length: 6 * 5 }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 5)));
    w.fill(0, 0, 5); // an all-zero row keeps scale 1
    for (const axis of [0, 1] as const) {
      const { q, scale } = quantizePerChannel(w, 6, 5, axis);
      expect(scale.length).toBe(axis === 0 ? 6 : 5);
      for (let r = 0; r < 6; r++) {
        for (let col = 0; col < 5; col++) {
          const s = scale[axis === 0 ? r : col];
          expect(Math.abs(q[r * 5 + col] * s - w[r * 5 + col])).toBeLessThanOrEqual(s / 2 + 1e-7);
        }
      }
      expect(Math.max(...Array.from(q, Math.abs))).toBe(127);
    }
  });
});

describe('the protobuf', () => {
  it('has IR version 8, opset 17, the transformers.js inputs and outputs, and one wte initializer shared by the embedding and the head', () => {
    const c = cases.find((x) => x.name === 'tiny')!;
    const m = onnx.ModelProto.decode(concatChunks(c.f32));
    expect(Number(m.irVersion)).toBe(8);
    expect(m.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17]]);
    const g = m.graph as import('onnx-proto').onnx.GraphProto;
    const L = c.config.nLayer;
    const layers = (f: (l: number) => string[]) => Array.from({ length: L }, (_, l) => f(l)).flat();
    expect(g.input.map((i) => i.name)).toEqual(['input_ids', 'attention_mask', 'position_ids', ...layers((l) => [`past_key_values.${l}.key`, `past_key_values.${l}.value`])]);
    expect(g.output.map((o) => o.name)).toEqual(['logits', ...layers((l) => [`present.${l}.key`, `present.${l}.value`])]);
    const big = g.initializer.filter((t) => (t.dims ?? []).map(Number).join() === [c.config.vocabSize, c.config.nEmbd].join());
    expect(big.map((t) => t.name)).toEqual(['transformer.wte.weight']);
    const users = g.node.filter((n) => (n.input ?? []).includes('transformer.wte.weight')).map((n) => n.opType).sort();
    expect(users).toEqual(['Gather', 'Gemm']);
  });

  it('passes onnx.checker.check_model(full_check=True) (float32, 8-bit, external data)', async () => {
    const c = cases.find((x) => x.name === 'tiny')!;
    const ext = mkdtempSync(join(tmpdir(), 'onnx-ext-'));
    const files = await gpt2OnnxFiles(c.config, c.params, { externalDataAbove: 0 });
    for (const f of files) writeFileSync(join(ext, f.name), concatChunks(f));
    const script = 'import onnx, sys\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\n    print("ok", p)\n';
    const paths = [join(c.dir, c.f32.name), join(c.dir, c.q8.name), join(ext, files[0].name)];
    const r = spawnSync(PYTHON, ['-c', script, ...paths], { encoding: 'utf8' });
    if (r.error) throw new Error(`${PYTHON} could not be run (${r.error.message}): install python3-onnx (scripts/setup-system.sh).`);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toHaveLength(3);
  });

  it('past the threshold, keeps the weights in decoder_model_merged.onnx_data, 4 KiB aligned, and still runs', async () => {
    const c = cases.find((x) => x.name === 'tiny')!;
    const ext = mkdtempSync(join(tmpdir(), 'onnx-ext-'));
    const files = await gpt2OnnxFiles(c.config, c.params, { externalDataAbove: 0 });
    expect(files.map((f) => f.name)).toEqual(['decoder_model_merged.onnx', 'decoder_model_merged.onnx_data']);
    for (const f of files) writeFileSync(join(ext, f.name), concatChunks(f));
    expect(statSync(join(ext, files[0].name)).size).toBeLessThan(c.f32.size / 10);
    const m = onnx.ModelProto.decode(concatChunks(files[0]));
    const external = (m.graph as import('onnx-proto').onnx.GraphProto).initializer.filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
    expect(external.length).toBeGreaterThan(0);
    for (const t of external) expect(Number((t.externalData ?? []).find((e) => e.key === 'offset')!.value) % 4096).toBe(0);
    const s = (await ortNode.InferenceSession.create(join(ext, files[0].name))) as unknown as SessionLike;
    const seq = [5, 17, 200, 3, 42];
    const { logits } = await ortLogits(ortNode as unknown as OrtLike, s, c.config, seq, 3);
    expect(relToLargest(logits, refLogits(c, seq))).toBeLessThan(1e-4);
  });
});
