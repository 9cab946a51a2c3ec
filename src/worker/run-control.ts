// Pause, resume and stop for one training run, as the training loop's beforeStep hook sees them:
// a paused run waits at the next step boundary (after reporting the steps it already took), and
// resumes with the frozen groups as the user left them. After a non-finite loss the run waits
// for the user's choice: go back to the last save at a lower learning rate, or stop.

interface Gate {
  promise: Promise<void>;
  open: () => void;
}

function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

export class RunControl {
  readonly abort = new AbortController();
  private pauseGate: Gate | null = null;
  private nextFrozen: ReadonlySet<number> | null = null;
  /** true while the loop waits at a step boundary */
  waiting = false;

  get paused(): boolean {
    return this.pauseGate !== null;
  }

  get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  /** Asks the run to stop at the next step boundary. */
  pause(): void {
    if (!this.stopped) this.pauseGate ??= gate();
  }

  /** Lets a paused run continue; `frozen` (the user's frozen groups now) applies from the next step. */
  resume(frozen: ReadonlySet<number> | null): void {
    if (frozen) this.nextFrozen = new Set(frozen);
    const g = this.pauseGate;
    this.pauseGate = null;
    g?.open();
  }

  /**
   * The run stopped at a non-finite step and waits for the user: resolves with the learning-rate
   * factor to go back to the last save with (`goBack`), or null when the run is stopped instead.
   * Meanwhile the run counts as waiting (the weights hold still: exports and samples may read them).
   */
  async diverged(): Promise<number | null> {
    if (this.stopped) return null;
    this.waiting = true;
    const choice = await new Promise<number | null>((res) => {
      this.choose = res;
      this.abort.signal.addEventListener('abort', () => res(null), { once: true });
    });
    this.choose = null;
    this.waiting = false;
    return choice;
  }

  /** Whether the run waits for a choice after a non-finite loss. */
  get divergedWaiting(): boolean {
    return this.choose !== null;
  }

  /** For a run waiting in `diverged`: go back to the last save with the learning rate × `lrScale`. */
  goBack(lrScale: number): boolean {
    const c = this.choose;
    if (!c) return false;
    c(lrScale);
    return true;
  }

  private choose: ((lrScale: number | null) => void) | null = null;

  /** Ends the run at the next step boundary (a paused run ends at once). */
  stop(reason?: unknown): void {
    this.abort.abort(reason);
    const g = this.pauseGate;
    this.pauseGate = null;
    g?.open();
  }

  /**
   * Called at every step boundary. While paused: reports the steps in flight (`settle`), calls
   * `onPaused`, waits for resume or stop, then `onResumed`. Returns the frozen groups to use
   * from now on when they were changed.
   */
  async boundary(settle: () => Promise<void>, onPaused: () => void, onResumed: () => void): Promise<ReadonlySet<number> | undefined> {
    if (this.pauseGate && !this.stopped) {
      await settle();
      const g = this.pauseGate;
      if (g) {
        this.waiting = true;
        onPaused();
        await g.promise;
        this.waiting = false;
        if (!this.stopped) onResumed();
      }
    }
    const f = this.nextFrozen;
    this.nextFrozen = null;
    return f ?? undefined;
  }
}
