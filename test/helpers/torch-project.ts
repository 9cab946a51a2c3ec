// Runs the PyTorch continuation (src/io/torch-project/train.py) in tests: with one process, or
// under torchrun on the CPU (gloo), on Debian's python3-torch. A missing PyTorch is a failure
// with install instructions, never a skip.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '../../src/io/safetensors.ts';

export const TRAIN_PY = fileURLToPath(new URL('../../src/io/torch-project/train.py', import.meta.url));
export const GOLDEN_CHECKPOINT_PY = fileURLToPath(new URL('./golden_checkpoint.py', import.meta.url));

/** The Python with PyTorch: $STUDIO_TORCH_PYTHON, else Debian's /usr/bin/python3, else python3. */
export function torchPython(): string {
  if (process.env.STUDIO_TORCH_PYTHON) return process.env.STUDIO_TORCH_PYTHON;
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

export interface PyResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function py(args: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): PyResult {
  const r = spawnSync(torchPython(), args, {
    encoding: 'utf8', input: opts.input, timeout: opts.timeoutMs ?? 240_000, maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, OMP_NUM_THREADS: '1', ...opts.env },
  });
  if (r.error) throw new Error(`${torchPython()} could not be run (${r.error.message}); install Debian's python3-torch (scripts/setup-system.sh).`);
  if (/No module named 'torch'/.test(r.stderr ?? '')) {
    throw new Error(`${torchPython()} has no PyTorch; install Debian's python3-torch (scripts/setup-system.sh) or set STUDIO_TORCH_PYTHON.`);
  }
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Runs a Python snippet that prints one JSON value; `train` is importable in it. */
export function pyJson<T>(script: string, input?: string): T {
  const pre = `import sys, json\nsys.path.insert(0, ${JSON.stringify(TRAIN_PY.replace(/\/train\.py$/, ''))})\nimport train\n`;
  const r = py(['-c', pre + script], { input });
  if (r.status !== 0) throw new Error(`Python failed (${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

// torchrun (torch.distributed.run) as `python3 -m torch.distributed.run`, with one repair:
// PyTorch 1.13's Std.from_str finds no member for "0" on Python 3.11 (enum.Flag no longer lists
// zero-valued members), so the default --redirects 0 / --tee 0 crash the launcher before any
// worker starts; later PyTorch releases parse it. Nothing else of torchrun is changed.
const TORCHRUN = `
import sys
from torch.distributed.elastic.multiprocessing import api
_from_str = api.Std.from_str
api.Std.from_str = lambda vm: api.Std.NONE if vm == '0' else _from_str(vm)
from torch.distributed.run import main
sys.argv = ['torchrun'] + sys.argv[1:]
main()
`;

/** train.py (or `script`) with one process (`procs` 1) or under torchrun --standalone --nproc_per_node procs. */
export function trainPy(args: string[], procs = 1, env: Record<string, string> = {}, script = TRAIN_PY): PyResult {
  const pre = procs === 1 ? [script] : ['-c', TORCHRUN, '--standalone', `--nproc_per_node=${procs}`, script];
  return py([...pre, ...args], { env });
}

/** Writes a step-0 studio checkpoint of a golden case (test/helpers/golden_checkpoint.py). */
export function goldenCheckpoint(dir: string, kase: string, overrides: Record<string, unknown> = {}): { losses: number[]; grad_norms: number[] } {
  const r = py([GOLDEN_CHECKPOINT_PY, dir, kase, ...Object.entries(overrides).map(([k, v]) => `${k}=${JSON.stringify(v)}`)]);
  if (r.status !== 0) throw new Error(`golden_checkpoint.py failed:\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

export interface LogLine {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
}

export function readLog(path: string): LogLine[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as LogLine);
}

/** Tensors of a safetensors file as float32, read with the studio's own reader. */
export function readTensors(path: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [k, t] of readSafetensors(new Uint8Array(readFileSync(path)), path)) out.set(k, t.data);
  return out;
}

/** Fraction of elements whose difference exceeds `tol` (absolute). */
export function fractionOff(got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-4): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} vs ${want.length}`);
  let off = 0;
  for (let i = 0; i < got.length; i++) if (!(Math.abs(got[i] - want[i]) <= tol)) off++;
  return off / Math.max(1, got.length);
}
