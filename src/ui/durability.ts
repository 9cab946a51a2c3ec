// What keeps the user's work on the page: a prompt before leaving while the run has steps that
// are not saved yet, persistent storage asked for once (so the browser does not evict saved runs
// under storage pressure), and the storage used and allowed, refreshed after each save.
import { useEffect, useState } from 'react';
import { unsavedSteps, useStudio } from './store.ts';

export interface StorageState {
  usage: number;
  quota: number;
  /** the browser promised not to evict this site's storage */
  persisted: boolean;
}

/** Prompts before the tab closes or reloads while steps since the last save exist. */
export function useLeaveGuard(): void {
  const unsaved = useStudio(unsavedSteps);
  useEffect(() => {
    if (unsaved === 0) return;
    const onBeforeUnload = (e: BeforeUnloadEvent) => {
      // Browsers show their own text; preventDefault (and returnValue for older ones) asks for the prompt.
      e.preventDefault();
      e.returnValue = '';
    };
    window.addEventListener('beforeunload', onBeforeUnload);
    return () => window.removeEventListener('beforeunload', onBeforeUnload);
  }, [unsaved]);
}

/** Asks for persistent storage once, and reports usage and quota, refreshed when `refresh` changes. */
export function useStorageState(refresh: unknown): StorageState | null {
  const [state, setState] = useState<StorageState | null>(null);
  useEffect(() => {
    const storage = navigator.storage;
    if (!storage?.estimate) return;
    let live = true;
    void (async () => {
      // persist() may show a prompt in some browsers; Chromium decides from site engagement.
      const persisted = (await storage.persisted?.().catch(() => false)) || (await storage.persist?.().catch(() => false)) || false;
      const { usage = 0, quota = 0 } = await storage.estimate();
      if (live) setState({ usage, quota, persisted });
    })();
    return () => {
      live = false;
    };
  }, [refresh]);
  return state;
}
