// GPT-2 as an ONNX model with past key/values, in the layout transformers.js (v2) and Optimum's
// `decoder_model_merged.onnx` use, so `AutoModelForCausalLM.from_pretrained` runs it:
//
//   inputs   input_ids                  int64 [batch_size, sequence_length]
//            attention_mask             int64 [batch_size, past_sequence_length + sequence_length]
//            position_ids               int64 [batch_size, sequence_length]
//            past_key_values.{i}.key    float [batch_size, n_head, past_sequence_length, head_size]
//            past_key_values.{i}.value  (same)
//   outputs  logits                     float [batch_size, sequence_length, vocab_size]
//            present.{i}.key|value      float [batch_size, n_head, past_sequence_length + sequence_length, head_size]
//
// One graph serves both the first call (past of length 0: transformers.js 2.17 feeds empty
// [1, n_head, 0, head_size] tensors, models.js addPastKeyValues) and the following ones, so no
// `use_cache_branch` If-node is needed; transformers.js passes that input only when the session
// lists it (models.js decoderForward). position_ids is listed, so transformers.js computes it as
// the running count of the attention mask (models.js preparePositionIds), as HF's generate does.
//
// The computation is HF's GPT2LMHeadModel (modeling_gpt2.py) in eval mode: pre-LayerNorm blocks,
// q/k/v as three consecutive C-wide blocks of c_attn's output, scores / sqrt(head size), keys
// later than the query or masked by attention_mask set to float32's lowest value before the
// softmax (GPT2Attention._attn), gelu_new or erf GELU, and a head tied to wte: the one `wte`
// initializer feeds both the Gather of the embedding and the Gemm (transB) of the LM head.
//
// The 8-bit variant keeps that graph and stores every matrix (wte, wpe, the Conv1D weights) as
// int8 with one float scale per output channel (symmetric, zero point 0), turned back into
// float by DequantizeLinear (opset 13 per-axis) in front of its users: a quarter of the size,
// the same interface. Biases and LayerNorm parameters stay float32.
//
// ONNX IR version 8, opset 17 (LayerNormalization), which onnxruntime 1.14 and onnx 1.12 read.
// The protobuf is encoded by onnx-proto (protobufjs); the file is produced as a list of chunks —
// the model without its graph, the graph's header, the graph's nodes, then one chunk per
// initializer — which is the same bytes as encoding the whole ModelProto at once (a message's
// encoding is the concatenation of its fields'), without holding the model twice. Past
// protobuf's 2 GB limit the weights go to an external data file (`<name>_data`, ONNX external
// data: location, offset, length), 4 KiB aligned for memory mapping.
import onnxProto from 'onnx-proto';
import { StudioError } from '../engine/errors.ts';
import { headSize, type GPT2Config } from '../engine/model/config.ts';
import { paramSpecs, type HostParams } from '../engine/model/params.ts';

// onnx-proto is CommonJS (`module.exports = $root`); both bundlers and Node hand it over as the default export.
const { onnx } = onnxProto as unknown as typeof import('onnx-proto');
type ITensorProto = import('onnx-proto').onnx.ITensorProto;
type INodeProto = import('onnx-proto').onnx.INodeProto;
type IValueInfoProto = import('onnx-proto').onnx.IValueInfoProto;
type IAttributeProto = import('onnx-proto').onnx.IAttributeProto;

/** The model cannot be written as ONNX (too large a tensor, a parameter missing …). */
export class OnnxExportError extends StudioError {}

export const ONNX_IR_VERSION = 8;
export const ONNX_OPSET = 17;
export const ONNX_MODEL_NAME = 'decoder_model_merged';
/** Protobuf cannot encode a message of 2 GiB or more; keep a margin for the graph itself. */
export const PROTOBUF_LIMIT = 2 ** 31 - 64 * 2 ** 20;
const EXTERNAL_ALIGN = 4096;

/** Reads one parameter (engine name, e.g. 'h.0.attn.c_attn.weight') as float32, when its turn comes. */
export type OnnxParamReader = (name: string) => Float32Array | Promise<Float32Array>;

export interface OnnxExportOptions {
  /** 8-bit weights (decoder_model_merged_quantized.onnx) */
  quantize?: boolean;
  /** initializer bytes above which weights go to an external data file (default: protobuf's limit) */
  externalDataAbove?: number;
}

export interface OnnxFile {
  /** file name, e.g. 'decoder_model_merged.onnx' */
  name: string;
  size: number;
  chunks: Uint8Array[];
}

const T = onnx.TensorProto.DataType;
const A = onnx.AttributeProto.AttributeType;

type Attr = number | number[] | { f: number };

function attribute(name: string, v: Attr): IAttributeProto {
  if (Array.isArray(v)) return { name, type: A.INTS, ints: v };
  if (typeof v === 'number') return { name, type: A.INT, i: v };
  return { name, type: A.FLOAT, f: v.f };
}

function bytesOf(a: Float32Array | Int8Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Symmetric int8 per channel: scale = max|w| / 127 over the channel, q = round(w / scale). */
export function quantizePerChannel(w: Float32Array, rows: number, cols: number, axis: 0 | 1): { q: Int8Array; scale: Float32Array } {
  const n = axis === 0 ? rows : cols;
  const max = new Float32Array(n);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const a = Math.abs(w[r * cols + c]);
      const k = axis === 0 ? r : c;
      if (a > max[k]) max[k] = a;
    }
  }
  // An all-zero channel gets scale 1 so the dequantized zeros stay exact (a zero scale is invalid).
  const scale = max.map((m) => (m > 0 ? m / 127 : 1));
  const q = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const s = scale[axis === 0 ? r : c];
      q[r * cols + c] = Math.max(-127, Math.min(127, Math.round(w[r * cols + c] / s)));
    }
  }
  return { q, scale };
}

/** Builds the nodes, inputs, outputs and initializers of the graph, naming values uniquely. */
class GraphBuilder {
  readonly nodes: INodeProto[] = [];
  /** small constants (shapes, scalars): kept in the graph's own chunk */
  readonly constants: ITensorProto[] = [];
  /** weights, in the order they are written */
  readonly weights: Array<{ name: string; make: () => Promise<ITensorProto> }> = [];
  private counter = 0;

  node(op: string, inputs: string[], attrs: Record<string, Attr> = {}, name?: string, outputs = 1): string[] {
    const base = name ?? `${op}_${this.counter++}`;
    const outs = outputs === 1 ? [`${base}_out`] : Array.from({ length: outputs }, (_, k) => `${base}_out${k}`);
    this.nodes.push({ name: base, opType: op, input: inputs, output: outs, attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) });
    return outs;
  }

  /** One-output node. */
  op(op: string, inputs: string[], attrs: Record<string, Attr> = {}, name?: string): string {
    return this.node(op, inputs, attrs, name)[0];
  }

  /** A node writing to a given output name (a graph output). */
  opTo(output: string, op: string, inputs: string[], attrs: Record<string, Attr> = {}): void {
    this.nodes.push({ name: `${op}_${output}`, opType: op, input: inputs, output: [output], attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) });
  }

  int64(name: string, values: number[], scalar = false): string {
    this.constants.push({ name, dataType: T.INT64, dims: scalar ? [] : [values.length], rawData: bytesOf(BigInt64Array.from(values.map(BigInt))) });
    return name;
  }

  float(name: string, value: number): string {
    this.constants.push({ name, dataType: T.FLOAT, dims: [], rawData: bytesOf(Float32Array.of(value)) });
    return name;
  }
}

function tensorType(elem: number, dims: Array<number | string>): IValueInfoProto['type'] {
  return { tensorType: { elemType: elem, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } };
}

/** Refuses what the graph cannot express before anything is written. */
export function checkOnnxExportable(config: GPT2Config): void {
  if (config.activation !== 'gelu_new' && config.activation !== 'gelu') {
    throw new OnnxExportError(`The ONNX export writes gelu_new or gelu activations; this model uses '${String(config.activation)}'.`);
  }
  for (const s of paramSpecs(config)) {
    if (s.numel * 4 >= 2 ** 31) {
      throw new OnnxExportError(`${s.name} (${s.shape.join('×')}) is 2 GiB or more as float32; one ONNX tensor cannot be that large. Export a smaller model.`);
    }
  }
}

/** The ONNX file(s) of the model: decoder_model_merged[_quantized].onnx and, past 2 GB, its `_data` file. */
export async function gpt2OnnxFiles(config: GPT2Config, params: HostParams | OnnxParamReader, opts: OnnxExportOptions = {}): Promise<OnnxFile[]> {
  checkOnnxExportable(config);
  const quantize = opts.quantize === true;
  const fileName = `${ONNX_MODEL_NAME}${quantize ? '_quantized' : ''}.onnx`;
  const C = config.nEmbd, NH = config.nHead, HS = headSize(config), V = config.vocabSize, L = config.nLayer;
  const specs = new Map(paramSpecs(config).map((s) => [s.name, s]));
  const read = async (name: string): Promise<Float32Array> => {
    const spec = specs.get(name)!;
    const d = params instanceof Map ? params.get(name) : await params(name);
    if (!(d instanceof Float32Array) || d.length !== spec.numel) {
      throw new OnnxExportError(`Parameter ${name} is ${d instanceof Float32Array ? `${d.length} values` : 'missing'}; the config needs ${spec.shape.join('×')} = ${spec.numel}.`);
    }
    return d;
  };
  const g = new GraphBuilder();

  /**
   * A weight by its HF name (with the `transformer.` prefix, as Optimum's exports name them).
   * `axis` is the output-channel axis of a matrix that the 8-bit variant quantizes.
   */
  const weight = (name: string, axis?: 0 | 1): string => {
    const full = `transformer.${name}`;
    const spec = specs.get(name)!;
    const dims = [...spec.shape];
    if (!quantize || axis === undefined) {
      g.weights.push({ name: full, make: async () => ({ name: full, dataType: T.FLOAT, dims, rawData: bytesOf(await read(name)) }) });
      return full;
    }
    const [rows, cols] = dims;
    let scale: Float32Array | undefined;
    g.weights.push({
      name: `${full}_quantized`,
      make: async () => {
        const qz = quantizePerChannel(await read(name), rows, cols, axis);
        scale = qz.scale;
        return { name: `${full}_quantized`, dataType: T.INT8, dims, rawData: bytesOf(qz.q) };
      },
    });
    // made right after the quantized tensor, which sets `scale`
    g.weights.push({ name: `${full}_scale`, make: async () => ({ name: `${full}_scale`, dataType: T.FLOAT, dims: [scale!.length], rawData: bytesOf(scale!) }) });
    const n = axis === 0 ? rows : cols;
    g.weights.push({ name: `${full}_zero_point`, make: async () => ({ name: `${full}_zero_point`, dataType: T.INT8, dims: [n], rawData: new Uint8Array(n) }) });
    g.opTo(full, 'DequantizeLinear', [`${full}_quantized`, `${full}_scale`, `${full}_zero_point`], { axis });
    return full;
  };

  // ---- the attention mask, built once: allowed[b, 0, i, j] = mask[b, j] && j ≤ past + i
  const one = g.int64('const_one', [1], true);
  const zero = g.int64('const_zero', [0], true);
  const idsShape = g.op('Shape', ['input_ids'], {}, 'input_shape');
  const seqLen = g.op('Gather', [idsShape, one], { axis: 0 }, 'sequence_length');
  const total = g.op('Gather', [g.op('Shape', ['attention_mask'], {}, 'mask_shape'), one], { axis: 0 }, 'total_length');
  const past = g.op('Sub', [total, seqLen], {}, 'past_length');
  const queryPos = g.op('Unsqueeze', [g.op('Range', [past, total, one], {}, 'query_positions'), g.int64('axes_1', [1])], {}, 'query_column'); // (S, 1)
  const keyPos = g.op('Unsqueeze', [g.op('Range', [zero, total, one], {}, 'key_positions'), g.int64('axes_0', [0])], {}, 'key_row'); // (1, P+S)
  const causal = g.op('Not', [g.op('Less', [queryPos, keyPos], {}, 'key_after_query')], {}, 'causal'); // (S, P+S)
  const padding = g.op('Unsqueeze', [g.op('Cast', ['attention_mask'], { to: T.BOOL }, 'mask_bool'), g.int64('axes_1_2', [1, 2])], {}, 'mask_4d'); // (B, 1, 1, P+S)
  const allowed = g.op('And', [padding, causal], {}, 'allowed'); // (B, 1, S, P+S)
  // torch.finfo(torch.float32).min, GPT2Attention._attn's mask value
  const lowest = g.float('mask_value', -3.4028234663852886e38);
  const sqrtHs = g.float('sqrt_head_size', Math.sqrt(HS));
  const headsShape = g.int64('shape_heads', [0, 0, NH, HS]);
  const mergedShape = g.int64('shape_merged', [0, 0, C]);
  const split3 = g.int64('split_qkv', [C, C, C]);

  const layerNorm = (x: string, prefix: string, name: string) =>
    g.op('LayerNormalization', [x, weight(`${prefix}.weight`), weight(`${prefix}.bias`)], { axis: -1, epsilon: { f: config.layerNormEpsilon } }, name);
  const linear = (x: string, prefix: string, name: string) => g.op('Add', [g.op('MatMul', [x, weight(`${prefix}.weight`, 1)], {}, `${name}/MatMul`), weight(`${prefix}.bias`)], {}, `${name}/Add`);
  const halfC = g.float('half', 0.5);
  const oneF = g.float('one_f', 1);
  const gelu = (x: string, name: string): string => {
    let inner: string;
    if (config.activation === 'gelu_new') {
      // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))  (HF NewGELUActivation)
      const x3 = g.op('Mul', [g.op('Mul', [x, x], {}, `${name}/x2`), x], {}, `${name}/x3`);
      const u = g.op('Add', [x, g.op('Mul', [x3, g.float(`${name}/c`, 0.044715)], {}, `${name}/cx3`)], {}, `${name}/u`);
      inner = g.op('Tanh', [g.op('Mul', [u, g.float(`${name}/k`, Math.sqrt(2 / Math.PI))], {}, `${name}/ku`)], {}, `${name}/tanh`);
    } else {
      // 0.5·x·(1 + erf(x / √2))  (torch.nn.functional.gelu)
      inner = g.op('Erf', [g.op('Div', [x, g.float(`${name}/sqrt2`, Math.SQRT2)], {}, `${name}/xs`)], {}, `${name}/erf`);
    }
    return g.op('Mul', [g.op('Mul', [x, halfC], {}, `${name}/half_x`), g.op('Add', [inner, oneF], {}, `${name}/one_plus`)], {}, `${name}/out`);
  };

  // ---- embeddings
  const wte = weight('wte.weight', 0);
  let x = g.op('Add', [g.op('Gather', [wte, 'input_ids'], { axis: 0 }, 'wte_gather'), g.op('Gather', [weight('wpe.weight', 0), 'position_ids'], { axis: 0 }, 'wpe_gather')], {}, 'embeddings');

  const inputs: IValueInfoProto[] = [
    { name: 'input_ids', type: tensorType(T.INT64, ['batch_size', 'sequence_length']) },
    { name: 'attention_mask', type: tensorType(T.INT64, ['batch_size', 'past_sequence_length + sequence_length']) },
    { name: 'position_ids', type: tensorType(T.INT64, ['batch_size', 'sequence_length']) },
  ];
  const outputs: IValueInfoProto[] = [{ name: 'logits', type: tensorType(T.FLOAT, ['batch_size', 'sequence_length', V]) }];

  for (let l = 0; l < L; l++) {
    const p = `h.${l}`;
    const pastK = `past_key_values.${l}.key`, pastV = `past_key_values.${l}.value`;
    const presentK = `present.${l}.key`, presentV = `present.${l}.value`;
    inputs.push({ name: pastK, type: tensorType(T.FLOAT, ['batch_size', NH, 'past_sequence_length', HS]) });
    inputs.push({ name: pastV, type: tensorType(T.FLOAT, ['batch_size', NH, 'past_sequence_length', HS]) });
    outputs.push({ name: presentK, type: tensorType(T.FLOAT, ['batch_size', NH, 'past_sequence_length + sequence_length', HS]) });
    outputs.push({ name: presentV, type: tensorType(T.FLOAT, ['batch_size', NH, 'past_sequence_length + sequence_length', HS]) });

    const h = layerNorm(x, `${p}.ln_1`, `${p}/ln_1`);
    const qkv = linear(h, `${p}.attn.c_attn`, `${p}/attn/c_attn`); // (B, S, 3C)
    const [q, k, v] = g.node('Split', [qkv, split3], { axis: 2 }, `${p}/attn/split`, 3);
    // (B, S, C) → (B, NH, S, HS): head h is the slice [h·HS, (h+1)·HS) of each block
    const heads = (t: string, n: string) => g.op('Transpose', [g.op('Reshape', [t, headsShape], {}, `${p}/attn/${n}_reshape`)], { perm: [0, 2, 1, 3] }, `${p}/attn/${n}_heads`);
    g.opTo(presentK, 'Concat', [pastK, heads(k, 'k')], { axis: 2 });
    g.opTo(presentV, 'Concat', [pastV, heads(v, 'v')], { axis: 2 });
    const kT = g.op('Transpose', [presentK], { perm: [0, 1, 3, 2] }, `${p}/attn/k_t`);
    const scores = g.op('Div', [g.op('MatMul', [heads(q, 'q'), kT], {}, `${p}/attn/qk`), sqrtHs], {}, `${p}/attn/scaled`); // (B, NH, S, P+S)
    const probs = g.op('Softmax', [g.op('Where', [allowed, scores, lowest], {}, `${p}/attn/masked`)], { axis: -1 }, `${p}/attn/softmax`);
    const y = g.op('Transpose', [g.op('MatMul', [probs, presentV], {}, `${p}/attn/pv`)], { perm: [0, 2, 1, 3] }, `${p}/attn/y_t`);
    const att = linear(g.op('Reshape', [y, mergedShape], {}, `${p}/attn/merge`), `${p}.attn.c_proj`, `${p}/attn/c_proj`);
    x = g.op('Add', [x, att], {}, `${p}/resid_1`);
    const m = gelu(linear(layerNorm(x, `${p}.ln_2`, `${p}/ln_2`), `${p}.mlp.c_fc`, `${p}/mlp/c_fc`), `${p}/mlp/gelu`);
    x = g.op('Add', [x, linear(m, `${p}.mlp.c_proj`, `${p}/mlp/c_proj`)], {}, `${p}/resid_2`);
  }

  // ---- tied LM head: (B·S, C) · wteᵀ by Gemm(transB), so wte is stored and held once
  const hf = layerNorm(x, 'ln_f', 'ln_f');
  const flat = g.op('Reshape', [hf, g.int64('shape_rows', [-1, C])], {}, 'head/rows');
  const rows = g.op('Gemm', [flat, wte], { transB: 1 }, 'head/gemm');
  const logitsShape = g.op('Concat', [idsShape, g.int64('vocab', [V])], { axis: 0 }, 'head/shape');
  g.opTo('logits', 'Reshape', [rows, logitsShape]);

  // ---- encode
  const graphHead = onnx.GraphProto.encode({
    name: 'gpt2',
    node: g.nodes,
    initializer: g.constants,
    input: inputs,
    output: outputs,
  }).finish();
  const weightChunks: Uint8Array[] = [];
  const dataChunks: Uint8Array[] = [];
  const tensors: ITensorProto[] = [];
  let weightBytes = 0;
  for (const w of g.weights) {
    const t = await w.make();
    tensors.push(t);
    weightBytes += t.rawData!.byteLength;
  }
  const external = weightBytes > (opts.externalDataAbove ?? PROTOBUF_LIMIT);
  const dataName = `${fileName}_data`;
  let offset = 0;
  for (const t of tensors) {
    if (external && t.rawData!.byteLength >= 1024) {
      const pad = (EXTERNAL_ALIGN - (offset % EXTERNAL_ALIGN)) % EXTERNAL_ALIGN;
      if (pad) dataChunks.push(new Uint8Array(pad));
      offset += pad;
      const length = t.rawData!.byteLength;
      dataChunks.push(t.rawData!);
      weightChunks.push(onnx.GraphProto.encode({
        initializer: [{
          name: t.name, dataType: t.dataType, dims: t.dims, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [{ key: 'location', value: dataName }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(length) }],
        }],
      }).finish());
      offset += length;
    } else {
      weightChunks.push(onnx.GraphProto.encode({ initializer: [t] }).finish());
    }
  }
  const graphLength = graphHead.byteLength + weightChunks.reduce((a, c) => a + c.byteLength, 0);
  if (graphLength >= 2 ** 31) throw new OnnxExportError(`The ONNX graph is ${graphLength} bytes, past protobuf's 2 GiB limit even with external data.`);
  const modelHead = onnx.ModelProto.encode({
    irVersion: ONNX_IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'webgpu-finetuning-studio',
    producerVersion: '0.1.0',
    docString: `GPT-2 (L=${L}, C=${C}, NH=${NH}, V=${V}) with past key/values${quantize ? ', int8 per-channel weights' : ''}`,
  }).finish();
  // field 7 (graph), wire type 2 (length-delimited)
  const graphTag = lengthDelimitedTag(7, graphLength);
  const chunks = [modelHead, graphTag, graphHead, ...weightChunks];
  const files: OnnxFile[] = [{ name: fileName, size: chunks.reduce((a, c) => a + c.byteLength, 0), chunks }];
  if (external) files.push({ name: dataName, size: offset, chunks: dataChunks });
  return files;
}

/** The key and length varints that open a length-delimited field, written by protobufjs's Writer. */
function lengthDelimitedTag(field: number, length: number): Uint8Array {
  // encode() of an empty message returns protobufjs's Writer, which writes the varints.
  return onnx.StringStringEntryProto.encode({}).uint32(((field << 3) | 2) >>> 0).uint32(length).finish();
}

/** The whole file as one array (tests, small models). */
export function concatChunks(f: OnnxFile): Uint8Array {
  const out = new Uint8Array(f.size);
  let o = 0;
  for (const c of f.chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}
