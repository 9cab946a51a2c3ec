// The page's state: a projection of worker events (src/worker/protocol.ts). Plain data only;
// GPU objects live in the worker.
import { create } from 'zustand';
import type { AdapterReport, WorkerEvent } from '../worker/protocol.ts';

export type AdapterState =
  | { status: 'probing' }
  | { status: 'ready'; report: AdapterReport }
  | { status: 'unavailable'; reason: string };

export interface SelftestResult {
  M: number;
  N: number;
  K: number;
  maxAbsError: number;
  ms: number;
}

export interface StudioState {
  adapter: AdapterState;
  selftest: { status: 'idle' | 'running' } | { status: 'done'; result: SelftestResult } | { status: 'failed'; message: string };
  errors: Array<{ name: string; message: string }>;
  apply(ev: WorkerEvent): void;
  selftestStarted(): void;
}

export const useStudio = create<StudioState>((set) => ({
  adapter: { status: 'probing' },
  selftest: { status: 'idle' },
  errors: [],
  selftestStarted: () => set({ selftest: { status: 'running' } }),
  apply: (ev) => {
    switch (ev.type) {
      case 'adapter':
        set({ adapter: { status: 'ready', report: ev.report } });
        return;
      case 'selftest':
        set({ selftest: { status: 'done', result: { M: ev.M, N: ev.N, K: ev.K, maxAbsError: ev.maxAbsError, ms: ev.ms } } });
        return;
      case 'error':
        if (ev.request === 'probe') set({ adapter: { status: 'unavailable', reason: ev.message } });
        else if (ev.request === 'selftest') set({ selftest: { status: 'failed', message: ev.message } });
        set((s) => ({ errors: [...s.errors, { name: ev.name, message: ev.message }] }));
        return;
    }
  },
}));
