// The studio's command line over the same engine as the page: `npm run cli -- <command>`.
// Bad input ends with a one-line error and a non-zero exit, never a stack trace
// (set STUDIO_DEBUG=1 to see one).
import { StudioError } from '../engine/errors.ts';
import { Args, givenOptions, helpText, parseArgs, UsageError, type CommandSpec } from './args.ts';
import { RunInterruptedError } from './run-checkpoints.ts';
import { runTrain, trainSpec } from './commands/train.ts';
import { prepareSpec, runPrepare } from './commands/prepare.ts';
import { evalSpec, runEval } from './commands/eval.ts';
import { generateSpec, runGenerate } from './commands/generate.ts';
import { exportSpec, runExport } from './commands/export.ts';
import { runTune, tuneSpec } from './commands/tune.ts';

interface Command {
  spec: CommandSpec;
  run(a: Args, out: (line: string) => void): Promise<void>;
}

const COMMANDS: Command[] = [
  { spec: trainSpec, run: runTrain },
  { spec: prepareSpec, run: runPrepare },
  { spec: generateSpec, run: runGenerate },
  { spec: evalSpec, run: runEval },
  { spec: exportSpec, run: runExport },
  { spec: tuneSpec, run: runTune },
];

function usage(): string {
  const lines = ['WebGPU Fine-Tuning Studio — command line', '', 'Usage: npm run cli -- <command> [options]', '', 'Commands:'];
  for (const c of COMMANDS) lines.push(`  ${c.spec.name.padEnd(10)}${c.spec.summary}`);
  lines.push('', 'Run a command with --help for its options.');
  return lines.join('\n');
}

export async function main(argv: string[], out: (line: string) => void = (l) => console.log(l)): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    out(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS.find((c) => c.spec.name === name);
  if (!cmd) {
    console.error(`error: unknown command '${name}'. Commands: ${COMMANDS.map((c) => c.spec.name).join(', ')}.`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    out(helpText(cmd.spec));
    return 0;
  }
  try {
    await cmd.run(new Args(parseArgs(cmd.spec, rest), givenOptions(rest)), out);
    return 0;
  } catch (e) {
    // A stop by signal is no error: it says where the checkpoint is and how to resume.
    if (e instanceof RunInterruptedError) {
      console.error(e.message);
      return e.exitCode;
    }
    if (process.env.STUDIO_DEBUG) console.error(e);
    const known = e instanceof StudioError;
    const msg = (e as Error)?.message ?? String(e);
    console.error(`error: ${known ? '' : `${(e as Error)?.name ?? 'Error'}: `}${msg.split('\n').join(' ')}`);
    return e instanceof UsageError ? 2 : 1;
  }
}

const isEntry = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isEntry) {
  main(process.argv.slice(2)).then((code) => {
    // A run stopped by a signal leaves at once, while its signal handler is still installed:
    // letting the event loop wind down (the GPU device's teardown) restores the default action
    // for a moment, and a repeat of the same Ctrl-C arriving then would kill the process
    // instead of letting it exit with 130/143. Its checkpoint and message are already written.
    if (code === 130 || code === 143) process.exit(code);
    process.exitCode = code;
  });
}
