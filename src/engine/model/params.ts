// The parameter layout of GPT2LMHeadModel, in Hugging Face names (without the `transformer.`
// prefix), with shapes, depth groups and whether AdamW decays them.
// Conv1D weights are stored (in, out): y = x·W + b. The LM head is tied to wte.
// Depth groups (docs/ARCHITECTURE.md, Freezing and depth groups): embeddings 0, block i at i + 1, ln_f at L + 1.
import { ShapeError } from '../errors.ts';
import type { GPT2Config } from './config.ts';

export interface ParamSpec {
  /** HF name without prefix, e.g. 'h.0.attn.c_attn.weight' */
  name: string;
  shape: number[];
  /** element count */
  numel: number;
  /** depth group: 0 embeddings, i + 1 block i, L + 1 ln_f */
  group: number;
  /** weight decay applies to tensors of two or more dimensions only */
  decay: boolean;
}

const BLOCK_PARAMS = (C: number, I: number): Array<[string, number[]]> => [
  ['ln_1.weight', [C]],
  ['ln_1.bias', [C]],
  ['attn.c_attn.weight', [C, 3 * C]],
  ['attn.c_attn.bias', [3 * C]],
  ['attn.c_proj.weight', [C, C]],
  ['attn.c_proj.bias', [C]],
  ['ln_2.weight', [C]],
  ['ln_2.bias', [C]],
  ['mlp.c_fc.weight', [C, I]],
  ['mlp.c_fc.bias', [I]],
  ['mlp.c_proj.weight', [I, C]],
  ['mlp.c_proj.bias', [C]],
];

function spec(name: string, shape: number[], group: number): ParamSpec {
  return { name, shape, numel: shape.reduce((a, b) => a * b, 1), group, decay: shape.length >= 2 };
}

/** Every parameter tensor in a fixed order: wte, wpe, blocks 0..L−1, ln_f. */
export function paramSpecs(c: GPT2Config): ParamSpec[] {
  const C = c.nEmbd;
  const out = [spec('wte.weight', [c.vocabSize, C], 0), spec('wpe.weight', [c.nPositions, C], 0)];
  for (let i = 0; i < c.nLayer; i++) {
    for (const [n, s] of BLOCK_PARAMS(C, c.nInner)) out.push(spec(`h.${i}.${n}`, s, i + 1));
  }
  out.push(spec('ln_f.weight', [C], c.nLayer + 1), spec('ln_f.bias', [C], c.nLayer + 1));
  return out;
}

export function countParams(c: GPT2Config): number {
  return paramSpecs(c).reduce((a, s) => a + s.numel, 0);
}

export function groupName(c: GPT2Config, g: number): string {
  if (g === 0) return 'embeddings';
  if (g === c.nLayer + 1) return 'ln_f';
  return String(g - 1);
}

/**
 * Parses a freeze list like "embeddings,0,1,ln_f" into depth groups.
 * Accepts 'embeddings', block indices 0 … L−1 (or ranges like 0-5) and 'ln_f'.
 */
export function parseGroupList(c: GPT2Config, list: string): Set<number> {
  const out = new Set<number>();
  for (const raw of list.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (raw === 'embeddings') out.add(0);
    else if (raw === 'ln_f') out.add(c.nLayer + 1);
    else if (/^\d+$/.test(raw) && Number(raw) < c.nLayer) out.add(Number(raw) + 1);
    else if (/^\d+-\d+$/.test(raw)) {
      const [a, b] = raw.split('-').map(Number);
      if (a > b || b >= c.nLayer) throw new ShapeError(`Unknown layer range '${raw}': blocks are 0 … ${c.nLayer - 1}.`);
      for (let i = a; i <= b; i++) out.add(i + 1);
    } else {
      throw new ShapeError(`Unknown layer '${raw}': use embeddings, 0 … ${c.nLayer - 1}, or ln_f.`);
    }
  }
  return out;
}

/** Host copy of all parameters, keyed by HF name (no prefix). */
export type HostParams = Map<string, Float32Array>;

/** Checks that `params` holds exactly the tensors of `c` with the right element counts. */
export function checkHostParams(c: GPT2Config, params: HostParams): void {
  for (const s of paramSpecs(c)) {
    const t = params.get(s.name);
    if (!t) throw new ShapeError(`Missing parameter ${s.name} (${s.shape.join('×')}).`);
    if (t.length !== s.numel) throw new ShapeError(`Parameter ${s.name} has ${t.length} elements; the config needs ${s.shape.join('×')} = ${s.numel}.`);
  }
}
