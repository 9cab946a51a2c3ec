// An independent reader: Python's standard library (struct + json, no numpy or torch) parses a
// model folder we saved and checks it against what transformers' GPT2LMHeadModel expects:
// GPT-2's exact tensor names with the transformer. prefix, Conv1D (in, out) shapes from
// config.json, F32, "format": "pt" metadata, a header padded to 8 bytes, contiguous offsets.
// It then reports per-tensor checksums so the data itself is compared with what we wrote.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/engine/model/config.ts';
import { paramSpecs, type HostParams } from '../../../src/engine/model/params.ts';
import { saveModelDir } from '../../../src/io/node-model.ts';
import { randn } from '../../helpers/numeric.ts';

const PY = String.raw`
import json, math, os, struct, sys

d = sys.argv[1]
cfg = json.load(open(os.path.join(d, 'config.json')))
assert cfg['model_type'] == 'gpt2', cfg.get('model_type')
assert cfg['architectures'] == ['GPT2LMHeadModel'], cfg.get('architectures')
assert cfg.get('tie_word_embeddings', True) is True
V, P, C, L = cfg['vocab_size'], cfg['n_positions'], cfg['n_embd'], cfg['n_layer']
I = cfg.get('n_inner') or 4 * C

raw = open(os.path.join(d, 'model.safetensors'), 'rb').read()
(n,) = struct.unpack('<Q', raw[:8])
assert n % 8 == 0, 'header length %d is not a multiple of 8' % n
hb = raw[8:8 + n]
body = hb.rstrip(b' ')
assert body.startswith(b'{') and body.endswith(b'}'), 'header padding is not spaces after the JSON'
header = json.loads(hb.decode('utf-8'))
meta = header.pop('__metadata__', None)
assert meta == {'format': 'pt'}, 'metadata %r' % (meta,)

# GPT2LMHeadModel.state_dict() names and shapes (modeling_gpt2.py; Conv1D weight is (nx, nf) = (in, out)).
want = {'transformer.wte.weight': [V, C], 'transformer.wpe.weight': [P, C]}
for i in range(L):
    p = 'transformer.h.%d.' % i
    want.update({
        p + 'ln_1.weight': [C], p + 'ln_1.bias': [C],
        p + 'attn.c_attn.weight': [C, 3 * C], p + 'attn.c_attn.bias': [3 * C],
        p + 'attn.c_proj.weight': [C, C], p + 'attn.c_proj.bias': [C],
        p + 'ln_2.weight': [C], p + 'ln_2.bias': [C],
        p + 'mlp.c_fc.weight': [C, I], p + 'mlp.c_fc.bias': [I],
        p + 'mlp.c_proj.weight': [I, C], p + 'mlp.c_proj.bias': [C],
    })
want['transformer.ln_f.weight'] = [C]
want['transformer.ln_f.bias'] = [C]
extra = sorted(set(header) - set(want))
missing = sorted(set(want) - set(header))
assert not extra and not missing, 'extra %r missing %r' % (extra, missing)

data = raw[8 + n:]
cursor = 0
out = {}
for name, e in sorted(header.items(), key=lambda kv: kv[1]['data_offsets']):
    assert e['dtype'] == 'F32', (name, e['dtype'])
    assert e['shape'] == want[name], (name, e['shape'], want[name])
    b, end = e['data_offsets']
    assert b == cursor, 'tensor %s starts at %d, previous ended at %d' % (name, b, cursor)
    count = math.prod(e['shape'])
    assert end - b == 4 * count, name
    vals = struct.unpack('<%df' % count, data[b:end])
    out[name] = {'first': vals[:3], 'last': vals[-1], 'fsum': math.fsum(vals), 'count': count}
    cursor = end
assert cursor == len(data), 'data section has %d bytes, tensors cover %d' % (len(data), cursor)
print(json.dumps({'header_length': n, 'tensors': out}))
`;

/** Runs the Python reader on `dir`; fails (never skips) when python3 is not installed. */
function pythonRead(dir: string): { header_length: number; tensors: Record<string, { first: number[]; last: number; fsum: number; count: number }> } {
  const r = spawnSync('python3', ['-c', PY, dir], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) {
    throw new Error(`python3 could not be run (${r.error.message}); install Python 3 (e.g. apt-get install python3) to run this independent reader test.`);
  }
  if (r.status !== 0) throw new Error(`The Python reader rejected the file:\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** A compensated (Neumaier) sum, close enough to Python's exactly rounded math.fsum to compare. */
function exactSum(a: Float32Array): number {
  let s = 0;
  let c = 0;
  for (const v of a) {
    const t = s + v;
    c += Math.abs(s) >= Math.abs(v) ? s - t + v : v - t + s;
    s = t;
  }
  return s + c;
}

describe('a saved model read by an independent Python reader', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('has exactly GPT-2 names, Conv1D shapes, F32, format pt, padded header, contiguous data', async () => {
    const config = parseConfig({ vocab_size: 50, n_positions: 32, n_embd: 16, n_layer: 2, n_head: 4 });
    const params: HostParams = new Map(paramSpecs(config).map((s, i) => [s.name, Float32Array.from(randn(s.numel, 100 + i))]));
    const dir = await mkdtemp(join(tmpdir(), 'studio-py-'));
    dirs.push(dir);
    await saveModelDir(dir, config, params);

    const py = pythonRead(dir);
    expect(py.header_length % 8).toBe(0);
    const names = Object.keys(py.tensors);
    expect(names).toHaveLength(2 + 12 * 2 + 2);
    expect(names).toContain('transformer.h.1.attn.c_attn.weight');
    for (const s of paramSpecs(config)) {
      const t = py.tensors[`transformer.${s.name}`];
      const data = params.get(s.name)!;
      expect(t.count, s.name).toBe(s.numel);
      expect(t.first, s.name).toEqual([...data.slice(0, 3)]);
      expect(t.last, s.name).toBe(data[data.length - 1]);
      expect(Math.abs(t.fsum - exactSum(data)), s.name).toBeLessThan(1e-12 * Math.max(1, Math.abs(t.fsum)));
    }
  });

  it('catches a file that breaks the layout (the reader is not a rubber stamp)', async () => {
    // Non-GPT-2 shapes: n_inner 3·C written as if the config said 4·C. Python must refuse it.
    const config = parseConfig({ vocab_size: 50, n_positions: 32, n_embd: 16, n_layer: 1, n_head: 4, n_inner: 48 });
    const params: HostParams = new Map(paramSpecs(config).map((s, i) => [s.name, Float32Array.from(randn(s.numel, 7 + i))]));
    const dir = await mkdtemp(join(tmpdir(), 'studio-py-'));
    dirs.push(dir);
    await saveModelDir(dir, config, params);
    await writeFile(join(dir, 'config.json'), JSON.stringify({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], vocab_size: 50, n_positions: 32, n_embd: 16, n_layer: 1, n_head: 4 }));
    expect(() => pythonRead(dir)).toThrow(/transformer\.h\.0\.mlp\.c_fc\.weight/);
  });
});
