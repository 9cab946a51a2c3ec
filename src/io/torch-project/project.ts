// The exported PyTorch project ("continue on a cluster"): what goes in it and its README, for the
// CLI's exporter (src/cli/torch-export.ts) and the page alike. Layout:
//
//   train.py                  the trainer (src/io/torch-project/train.py), PyTorch ≥ 1.13 + numpy
//   checkpoint/               the studio checkpoint (docs/checkpoint-format.md), unchanged except
//                             that trainer_state.json names the data as ../data/train.bin
//                             (relative paths are relative to the checkpoint folder, so the
//                             project can be copied anywhere); train.py's own checkpoints name
//                             it by absolute path again
//   data/train.bin            the training token stream as a nanoGPT uint16 file: token files are
//                             copied in, text corpora are tokenized as the run tokenized them
//   data/eval.bin             the held-out tokens, when the run has them
//   README.md                 the commands for one GPU, one node of 8 GPUs, several nodes
import { StudioError } from '../../engine/errors.ts';

/** A checkpoint that cannot be exported as it is (not a checkpoint, another format version, data changed). */
export class TorchExportError extends StudioError {}

export const CHECKPOINT_FORMAT = 'webgpu-finetuning-studio/checkpoint';
export const CHECKPOINT_FORMAT_VERSION = 1;
export const PROJECT_TRAIN_DATA = 'data/train.bin';
export const PROJECT_EVAL_DATA = 'data/eval.bin';

/** The parts of trainer_state.json the exporter reads (the rest is carried over as it is). */
export interface ExportedState {
  step: number;
  total_steps: number;
  settings: { batch: number; seq: number; grad_accum?: number; lora?: unknown; dropout?: { embd: number; attn: number; resid: number } };
  data: { train: string[]; eval?: string[] };
  fingerprints: { train_tokens?: string; eval_tokens?: string };
}

/** Checks the header fields of a parsed trainer_state.json; throws TorchExportError naming what is wrong. */
export function checkTrainerState(json: unknown, where: string): ExportedState {
  const s = json as Record<string, unknown> | null;
  if (!s || typeof s !== 'object' || s.format !== CHECKPOINT_FORMAT) {
    throw new TorchExportError(`${where} is not a studio checkpoint's trainer_state.json (format is not '${CHECKPOINT_FORMAT}'). Export a checkpoint-<step> folder.`);
  }
  if (s.format_version !== CHECKPOINT_FORMAT_VERSION) {
    throw new TorchExportError(`${where}: checkpoint format version ${String(s.format_version)}; this studio reads version ${CHECKPOINT_FORMAT_VERSION}. Use the studio version that wrote it.`);
  }
  const st = s as unknown as ExportedState;
  const hasData = !!st.data && Array.isArray(st.data.train) && st.data.train.length > 0;
  if (!Number.isInteger(st.step) || !st.settings || !Number.isInteger(st.settings.batch) || !hasData) {
    throw new TorchExportError(`${where} lacks step, settings.batch or data.train; the checkpoint is incomplete.`);
  }
  return st;
}

/** trainer_state.json of the project's checkpoint/: the same, with the data named inside the project. */
export function projectTrainerState(state: Record<string, unknown>, hasEval: boolean): Record<string, unknown> {
  // Both lists are always present: the format's readers require them.
  const data = { ...(state.data as Record<string, unknown>), train: ['../' + PROJECT_TRAIN_DATA], eval: hasEval ? ['../' + PROJECT_EVAL_DATA] : [] };
  return { ...state, data };
}

/** Process counts that split a batch of B rows evenly, up to `max`. */
function divisors(B: number, max = 64): number[] {
  const out: number[] = [];
  for (let d = 1; d <= Math.min(B, max); d++) if (B % d === 0) out.push(d);
  return out;
}

/** README.md of the project, with the run's own numbers in its commands. */
export function projectReadme(state: ExportedState, modelName: string): string {
  const s = state.settings;
  const B = s.batch;
  const M = s.grad_accum ?? 1;
  const total = state.total_steps ?? state.step;
  const fits = divisors(B);
  const eight = B % 8 === 0 ? 8 : Math.max(...fits.filter((d) => d <= 8));
  const drop = s.dropout;
  const dropoutOn = !!drop && (drop.embd > 0 || drop.attn > 0 || drop.resid > 0);
  return `# Continue a WebGPU Fine-Tuning Studio run with PyTorch

This folder continues a fine-tuning run of \`${modelName}\` that the studio saved after
optimizer step ${state.step} of ${total}. \`train.py\` needs only PyTorch (1.13 or newer) and numpy
and performs the remaining steps as the studio would: the same AdamW state and parameter groups,
learning-rate schedule, clipping, ${s.lora ? 'LoRA weights, ' : ''}frozen groups and unfreezing plan,
and the same order of training windows.

- \`checkpoint/\` the studio checkpoint (a Hugging Face model folder plus \`optimizer.safetensors\`
  and \`trainer_state.json\`); its data path \`../data/train.bin\` is relative to it.
- \`data/\` the training tokens (nanoGPT uint16 format)${state.data.eval?.length ? ' and the held-out tokens' : ''}.
- \`train.py\` the trainer. \`python train.py --help\` lists its options.

## Commands

\`--steps\` is the run's total (the schedule is laid out over it): \`--steps ${total}\` finishes the
run as planned, and a larger number extends it (the schedule is then computed over the new total). Log lines
are numbered from step ${state.step + 1}. Each optimizer step reads ${B} rows${M > 1 ? ` per micro-batch, ${M} micro-batches` : ''};
the rows of each micro-batch are split across the processes, so the number of processes must divide
${B} (${fits.join(', ')}). More GPUs than that cannot speed up this run without changing its batch.

One GPU (or the CPU):

    python train.py --steps ${total} --out runs/continued

One node with ${eight} GPUs${eight === 8 ? '' : ` (a node of 8 GPUs needs a batch that divides by 8; this run's is ${B}, so use ${eight} of them)`}:

    torchrun --standalone --nproc_per_node ${eight} train.py --steps ${total} --out runs/continued

Several nodes (run the same command on every node; HOST is the first node's address):

    torchrun --nnodes 2 --nproc_per_node ${Math.max(1, eight / 2)} --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
      --rdzv_id studio-continue train.py --steps ${total} --out runs/continued

Options: \`--save-every N\` writes \`runs/continued/checkpoint-<step>/\` every N steps (one is always
written at the last step); \`--log FILE\` (default \`runs/continued/log.jsonl\`, one JSON line per step:
\`{"step", "loss", "lr", "grad_norm"}\`, the loss and gradient norm of the whole batch, appended);
\`--device cpu|cuda\`; \`--bf16\` runs the forward pass in bfloat16 autocast on GPUs (off by default,
so the run continues the studio's float32 numbers). Processes talk over NCCL on GPUs and gloo on CPUs;
only rank 0 writes files. Output folders and checkpoints that already exist are never written over.

At the end \`runs/continued/\` holds the model in the Hugging Face layout (\`config.json\`,
\`model.safetensors\`: float32, \`transformer.\` names, the LM head tied to \`wte\`)${s.lora ? ', with the\nLoRA weights merged into the weights; the LoRA factors alone are in `runs/continued/adapter/` (PEFT layout)' : ''}.
It loads with \`GPT2LMHeadModel.from_pretrained("runs/continued")\`.

## Back into the studio

Every \`checkpoint-<step>/\` that \`train.py\` writes is a studio checkpoint (format version 1,
\`"writer": "torch"\`) that names its data by absolute path: resume it in the studio's command line
(\`train --resume\`) or in the page (Resume from a checkpoint), or continue it with \`train.py\` again
(\`--checkpoint runs/continued/checkpoint-<step>\`).

## Dropout

${dropoutOn
    ? `This run uses dropout (embeddings ${drop!.embd}, attention ${drop!.attn}, residual ${drop!.resid}). The studio draws its
dropout masks from its own counter-based generator; PyTorch draws its own, so the continued curve
agrees with the studio's in distribution, not number for number.`
    : `This run has dropout 0, so the continuation reproduces the studio's losses step for step (to float32
rounding). With dropout above 0 PyTorch's own masks are used and the curve agrees with the studio's
in distribution, not number for number.`}
`;
}
