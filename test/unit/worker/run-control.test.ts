// Pause, resume and stop at step boundaries, as the training loop's beforeStep hook sees them.
import { describe, expect, it } from 'vitest';
import { RunControl } from '../../../src/worker/run-control.ts';

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('RunControl', () => {
  it('passes boundaries at once while running', async () => {
    const c = new RunControl();
    let settled = 0;
    expect(await c.boundary(async () => void settled++, () => {}, () => {})).toBeUndefined();
    expect(settled).toBe(0);
  });

  it('pauses at the next boundary after reporting the steps in flight, and resumes with new frozen groups', async () => {
    const c = new RunControl();
    const log: string[] = [];
    c.pause();
    const b = c.boundary(async () => void log.push('settle'), () => log.push('paused'), () => log.push('resumed'));
    await tick();
    expect(log).toEqual(['settle', 'paused']);
    expect(c.waiting).toBe(true);
    c.resume(new Set([0, 2]));
    expect([...(await b)!]).toEqual([0, 2]);
    expect(log).toEqual(['settle', 'paused', 'resumed']);
    expect(c.waiting).toBe(false);
    // The change is handed over once.
    expect(await c.boundary(async () => {}, () => {}, () => {})).toBeUndefined();
  });

  it('stops a paused run without resuming it', async () => {
    const c = new RunControl();
    const log: string[] = [];
    c.pause();
    const b = c.boundary(async () => {}, () => log.push('paused'), () => log.push('resumed'));
    await tick();
    c.stop();
    await b;
    expect(c.stopped).toBe(true);
    expect(log).toEqual(['paused']);
    c.pause();
    expect(c.paused).toBe(false); // a stopped run cannot be paused again
  });

  it('after a non-finite loss: waits (the weights hold still) until going back with a factor, or a stop', async () => {
    const c = new RunControl();
    expect(c.goBack(0.5)).toBe(false); // nothing waits yet
    const choice = c.diverged();
    expect(c.waiting).toBe(true);
    expect(c.divergedWaiting).toBe(true);
    expect(c.goBack(0.25)).toBe(true);
    expect(await choice).toBe(0.25);
    expect(c.waiting).toBe(false);
    expect(c.divergedWaiting).toBe(false);

    const d = new RunControl();
    const stopped = d.diverged();
    d.stop();
    expect(await stopped).toBeNull();
    expect(await d.diverged()).toBeNull(); // already stopped: no wait
  });
});
