// Runs an independent check written in Python (standard library only) and returns its JSON
// output. A missing python3 is a failure with install instructions, never a skip.
import { spawnSync } from 'node:child_process';

export function runPython<T = unknown>(script: string, args: string[] = [], timeoutMs = 120_000): T {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) {
    throw new Error(`python3 could not be run (${r.error.message}); install Python 3 (e.g. apt-get install python3) to run this independent check.`);
  }
  if (r.status !== 0) throw new Error(`The Python check failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Whether a command exists on PATH (for tools the brief checks "if present", like unzip). */
export function hasCommand(cmd: string): boolean {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '';
}
