// Runs the CLI's main() in this process, as the command line would, capturing what it prints:
// `printed` is its standard output (the lines given to `out`), `errors` what it wrote through
// console.error (progress, warnings, error messages).
import { vi } from 'vitest';
import { main } from '../../src/cli/main.ts';

export interface CliRun {
  code: number;
  printed: string;
  errors: string;
}

export async function runCli(args: string[]): Promise<CliRun> {
  const printed: string[] = [];
  const errors: string[] = [];
  const spy = vi.spyOn(console, 'error').mockImplementation((...m: unknown[]) => void errors.push(m.join(' ')));
  try {
    const code = await main(args, (l) => printed.push(l));
    return { code, printed: printed.join('\n'), errors: errors.join('\n') };
  } finally {
    spy.mockRestore();
  }
}
