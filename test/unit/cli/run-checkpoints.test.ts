// The train command's durability helpers without a GPU: the signal rule (the first SIGINT/SIGTERM
// stops after the step in flight, repeats within 2 s are the same Ctrl-C, a later one exits at
// once with 130/143), the --log file cut back to the checkpoint's step on resume, and that every
// run option is either compared with the checkpoint on --resume or allowed to change.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { trainSpec } from '../../../src/cli/commands/train.ts';
import { freeOnResume, RUN_FLAGS_CHECKED, SIGNAL_GRACE_MS, StepLogFile, StopSignals } from '../../../src/cli/run-checkpoints.ts';

describe('StopSignals', () => {
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    it(`${sig}: the first aborts, repeats within ${SIGNAL_GRACE_MS} ms are ignored, a later one exits with ${code}`, () => {
      let now = 1000;
      const exits: number[] = [];
      const said: string[] = [];
      const s = new StopSignals((l) => said.push(l), (c) => exits.push(c), () => now);
      expect(s.signal.aborted).toBe(false);
      s.on(sig);
      expect(s.signal.aborted).toBe(true);
      expect(s.received).toBe(sig);
      expect(s.exitCode).toBe(code);
      expect(said[0]).toMatch(new RegExp(`^${sig}: finishing the step in flight`));
      now += SIGNAL_GRACE_MS - 1;
      s.on('SIGINT');
      expect(exits).toEqual([]);
      now += 1;
      s.resumeFrom = '/runs/out/checkpoint-7';
      s.on(sig);
      expect(exits).toEqual([code]);
      expect(said.at(-1)).toBe(`${sig} again: exiting now; the checkpoints written so far are intact. Resume with: npm run cli -- train --resume /runs/out/checkpoint-7`);
    });
  }
});

describe('StepLogFile', () => {
  it('a fresh run starts the file empty; a resume keeps lines up to the checkpoint step and appends', () => {
    const dir = mkdtempSync(join(tmpdir(), 'steplog-'));
    const p = join(dir, 'sub', 'log.jsonl'); // its folder is created
    let f = StepLogFile.open(p, null);
    for (let s = 1; s <= 5; s++) f.write({ step: s, loss: s });
    f.write({ step: 4, eval_loss: 1 });
    // Written as they come: readable before close.
    expect(readFileSync(p, 'utf8').trim().split('\n')).toHaveLength(6);
    f.close();
    f = StepLogFile.open(p, 3);
    expect(readFileSync(p, 'utf8')).toBe('{"step":1,"loss":1}\n{"step":2,"loss":2}\n{"step":3,"loss":3}\n');
    f.write({ step: 4, loss: 40 });
    f.close();
    expect(readFileSync(p, 'utf8').trim().split('\n').at(-1)).toBe('{"step":4,"loss":40}');
    writeFileSync(p, '{"step":1}\n');
    StepLogFile.open(p, null).close();
    expect(readFileSync(p, 'utf8')).toBe('');
  });
});

describe('--resume flag rules', () => {
  it('every train option is either compared with the checkpoint or free to change', () => {
    const names = trainSpec.options.map((o) => o.name);
    const unruled = names.filter((n) => !RUN_FLAGS_CHECKED.includes(n) && !freeOnResume(n));
    expect(unruled).toEqual([]);
  });
});
