// The page's Tune request: the matmul tuning run (engine/train/tune.ts) at the loaded model's training
// shapes (GPT-2 124M's without a model) for B·T = 512, kept in OPFS for this adapter
// (tuning-opfs.ts). Never while a run trains: a run takes the saved tiles when it starts.
import type { GpuContext } from '../engine/gpu/context.ts';
import { DEFAULT_TILE, tileName } from '../engine/gpu/variants.ts';
import { GPT2_SMALL } from '../engine/model/config.ts';
import { trainingShapes, tuneMatmul } from '../engine/train/tune.ts';
import { StudioBusyError, type Session } from './session.ts';
import { saveTunedTiles } from './tuning-opfs.ts';

/** Rows (B·T) the page tunes for: batch 4 of 128 tokens, the page's default run. */
const ROWS = 512;

/** Tunes, saves, and returns the lines to show (the choice per shape class against the default). */
export async function tunePage(s: Session, ctx: GpuContext): Promise<string[]> {
  if (s.run) throw new StudioBusyError('A run is training. Tune when it has stopped: a run keeps the tiles it started with.');
  const config = s.model?.folder.config ?? GPT2_SMALL;
  const what = s.model ? s.model.info.name : 'GPT-2 124M';
  const shapes = trainingShapes(config, ROWS);
  const r = await tuneMatmul(ctx, shapes, { reps: 3 });
  const lines: string[] = [];
  for (const [cls, tile] of Object.entries(r.matmul)) {
    const mine = r.timings.filter((t) => t.cls === cls);
    const best = Math.min(...mine.map((t) => t.ms));
    const dflt = mine.find((t) => t.tile === tileName(DEFAULT_TILE))?.ms;
    lines.push(`${cls}: ${tileName(tile)}${dflt ? `, ${(dflt / best).toFixed(2)}× the default` : ''}`);
  }
  await saveTunedTiles(ctx, r.matmul, `${what}, B·T = ${ROWS}`, (m) => lines.push(m));
  return lines;
}
