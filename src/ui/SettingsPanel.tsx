// Training settings with inline validation: every value is checked as it is typed against the
// loaded model and corpus (a sequence length above n_positions, say) with the same checks the
// worker applies before a run.
import { useMemo } from 'react';
import { scheduleCurve } from '../engine/train/schedule.ts';
import { LORA_TARGETS, runSteps, validateTrain, type LoraTarget, type ScheduleKind, type TrainSettings } from '../worker/settings.ts';
import { CheckField, NumberField, SelectField } from './fields.tsx';
import { lr as fmtLr } from './format.ts';
import { useStudio } from './store.ts';

const SCHEDULES: ReadonlyArray<{ value: ScheduleKind; label: string }> = [
  { value: 'constant', label: 'Constant (after warmup)' },
  { value: 'linear', label: 'Linear decay (HF default)' },
  { value: 'cosine', label: 'Cosine decay' },
  { value: 'slanted', label: 'Slanted triangular (ULMFiT)' },
];

/** A tiny sparkline of the learning-rate multiplier over the run. */
function ScheduleSketch({ s, steps }: { s: TrainSettings; steps: number }) {
  const path = useMemo(() => {
    if (!(steps >= 1)) return '';
    try {
      const n = Math.min(steps, 200);
      const curve = scheduleCurve({ kind: s.schedule, warmup: s.warmup, minLrRatio: s.minLrRatio, cutFrac: s.cutFrac, ratio: s.stlrRatio }, steps);
      const pts: string[] = [];
      for (let i = 0; i < n; i++) {
        const k = Math.floor((i * (steps - 1)) / Math.max(1, n - 1));
        pts.push(`${((i / Math.max(1, n - 1)) * 100).toFixed(2)},${(30 - curve[k] * 28).toFixed(2)}`);
      }
      return `M${pts.join(' L')}`;
    } catch {
      return '';
    }
  }, [s.schedule, s.warmup, s.minLrRatio, s.cutFrac, s.stlrRatio, steps]);
  if (!path) return null;
  return (
    <svg className="sketch" viewBox="0 0 100 32" preserveAspectRatio="none" role="img" aria-label={`Learning-rate schedule over ${steps} steps`}>
      <path d={path} />
    </svg>
  );
}

export function SettingsPanel() {
  const s = useStudio((x) => x.train);
  const info = useStudio((x) => x.model.info);
  const corpus = useStudio((x) => x.corpus.info);
  const runState = useStudio((x) => x.run.state);
  const adapter = useStudio((x) => x.adapter);
  const hasF16 = adapter.status === 'ready' ? adapter.report.features.includes('shader-f16') : undefined;
  const hasSubgroups = adapter.status === 'ready' ? adapter.report.features.includes('subgroups') : undefined;
  const { setTrain } = useStudio.getState();
  const locked = runState === 'running' || runState === 'paused' || runState === 'starting' || runState === 'stopping';
  const trainTokens = corpus?.trainTokens;
  const errors = validateTrain(s, { nPositions: info?.nPositions, nLayer: info?.nLayer, trainTokens, hasF16, hasSubgroups });
  const steps = runSteps(s, trainTokens);
  const set = (patch: Partial<TrainSettings>) => setTrain(patch);
  const common = { disabled: locked };

  return (
    <section className="panel" aria-labelledby="settings-title" data-testid="settings-panel">
      <h2 id="settings-title">Training settings</h2>
      {locked && <p className="muted">Settings are fixed while a run is in progress.</p>}
      <fieldset>
        <legend>Learning rate</legend>
        <div className="row2">
          <NumberField label="Peak learning rate" value={s.lr} onChange={(lr) => set({ lr })} error={errors.lr} testId="set-lr"
            hint={info && !info.pretrained ? 'Freshly initialized weights: ~3e-3.' : 'Pretrained GPT-2: 5e-5 … 3e-4.'} {...common} />
          <SelectField label="Schedule" value={s.schedule} options={SCHEDULES} onChange={(schedule) => set({ schedule })} {...common} />
        </div>
        {s.schedule === 'slanted' ? (
          <div className="row2">
            <NumberField label="Cut fraction" value={s.cutFrac} onChange={(cutFrac) => set({ cutFrac })} error={errors.cutFrac} {...common} />
            <NumberField label="Ratio (peak / lowest)" value={s.stlrRatio} onChange={(stlrRatio) => set({ stlrRatio })} error={errors.stlrRatio} {...common} />
          </div>
        ) : (
          <div className="row2">
            <NumberField label="Warmup" value={s.warmup} onChange={(warmup) => set({ warmup })} error={errors.warmup} hint="Steps, or a fraction of the run below 1." {...common} />
            {s.schedule !== 'constant' && (
              <NumberField label="Minimum lr ratio" value={s.minLrRatio} onChange={(minLrRatio) => set({ minLrRatio })} error={errors.minLrRatio} {...common} />
            )}
          </div>
        )}
        <ScheduleSketch s={s} steps={steps} />
      </fieldset>

      <fieldset>
        <legend>Length and batch</legend>
        <div className="row2">
          <SelectField label="Run length in" value={s.lengthUnit} options={[{ value: 'steps', label: 'Optimizer steps' }, { value: 'epochs', label: 'Epochs' }]}
            onChange={(lengthUnit) => set({ lengthUnit })} {...common} />
          {s.lengthUnit === 'steps' ? (
            <NumberField label="Steps" value={s.steps} integer onChange={(steps) => set({ steps })} error={errors.steps} testId="set-steps" {...common} />
          ) : (
            <NumberField label="Epochs" value={s.epochs} onChange={(epochs) => set({ epochs })} error={errors.epochs}
              hint={trainTokens ? `${steps} steps over this corpus.` : 'Load a corpus to see the steps.'} {...common} />
          )}
        </div>
        <div className="row3">
          <NumberField label="Batch (rows)" value={s.batch} integer onChange={(batch) => set({ batch })} error={errors.batch} testId="set-batch" {...common} />
          <NumberField label="Sequence length" value={s.seq} integer onChange={(seq) => set({ seq })} error={errors.seq} testId="set-seq"
            hint={info ? `At most ${info.nPositions}.` : undefined} {...common} />
          <NumberField label="Accumulation" value={s.gradAccum} integer onChange={(gradAccum) => set({ gradAccum })} error={errors.gradAccum}
            hint={`${s.batch * s.gradAccum * s.seq} tokens per step.`} {...common} />
        </div>
      </fieldset>

      <fieldset>
        <legend>Saving</legend>
        <NumberField label="Save the run every (minutes)" value={s.autosaveMinutes} min={0} onChange={(autosaveMinutes) => set({ autosaveMinutes })} error={errors.autosaveMinutes}
          testId="set-autosave" hint="In this browser, also at pause, stop and finish; 0 saves only then. A reload or crash resumes from the last save." {...common} />
      </fieldset>

      <fieldset>
        <legend>Regularization</legend>
        <div className="row3">
          <NumberField label="Weight decay" value={s.weightDecay} onChange={(weightDecay) => set({ weightDecay })} error={errors.weightDecay} {...common} />
          <NumberField label="Gradient clipping" value={s.gradClip} onChange={(gradClip) => set({ gradClip })} error={errors.gradClip} hint="Max norm; 0 is off." {...common} />
          <NumberField label="Dropout" value={s.dropout} onChange={(dropout) => set({ dropout })} error={errors.dropout} testId="set-dropout" {...common} />
        </div>
      </fieldset>

      <fieldset>
        <legend>Layer-wise methods</legend>
        <NumberField label="Discriminative factor f" value={s.lrDecay} onChange={(lrDecay) => set({ lrDecay })} error={errors.lrDecay}
          hint={s.lrDecay === 1 ? '1 is off. Each group down trains f times slower (1.05 … 1.35 suits GPT-2).' : `The embeddings train at ${fmtLr(s.lr / s.lrDecay ** ((info?.nLayer ?? 0) + 1))}.`} {...common} />
        <CheckField label="Gradual unfreezing (ULMFiT)" checked={s.unfreeze.enabled} onChange={(enabled) => set({ unfreeze: { ...s.unfreeze, enabled } })} {...common} />
        {s.unfreeze.enabled && (
          <div className="row2">
            <NumberField label="Groups open at first" value={s.unfreeze.start} integer onChange={(start) => set({ unfreeze: { ...s.unfreeze, start } })} error={errors['unfreeze.start']} {...common} />
            <NumberField label="Open one more every (steps)" value={s.unfreeze.every} integer onChange={(every) => set({ unfreeze: { ...s.unfreeze, every } })} error={errors['unfreeze.every']} {...common} />
          </div>
        )}
      </fieldset>

      <fieldset>
        <legend>LoRA</legend>
        <CheckField label="Train LoRA weights instead of the model's" checked={s.lora.enabled} onChange={(enabled) => set({ lora: { ...s.lora, enabled } })} testId="set-lora"
          hint="PEFT's method: the base stays frozen; small A, B matrices train." {...common} />
        {s.lora.enabled && (
          <>
            <div className="row3">
              <NumberField label="Rank r" value={s.lora.r} integer onChange={(r) => set({ lora: { ...s.lora, r } })} error={errors['lora.r']} testId="set-lora-r" {...common} />
              <NumberField label="α" value={s.lora.alpha} onChange={(alpha) => set({ lora: { ...s.lora, alpha } })} error={errors['lora.alpha']} {...common} />
              <NumberField label="LoRA dropout" value={s.lora.dropout} onChange={(dropout) => set({ lora: { ...s.lora, dropout } })} error={errors['lora.dropout']} {...common} />
            </div>
            <div className="row wrap" role="group" aria-label="LoRA target modules">
              {LORA_TARGETS.map((t: LoraTarget) => (
                <CheckField key={t} label={t} checked={s.lora.targets.includes(t)} {...common}
                  onChange={(on) => set({ lora: { ...s.lora, targets: on ? [...s.lora.targets, t] : s.lora.targets.filter((x) => x !== t) } })} />
              ))}
            </div>
            {errors['lora.targets'] && <p className="field-error">{errors['lora.targets']}</p>}
          </>
        )}
      </fieldset>

      <fieldset>
        <legend>During the run</legend>
        <div className="row3">
          <NumberField label="Evaluate every (steps)" value={s.evalEvery} integer onChange={(evalEvery) => set({ evalEvery })} error={errors.evalEvery} testId="set-eval-every" {...common} />
          <NumberField label="Sample every (steps)" value={s.sampleEvery} integer onChange={(sampleEvery) => set({ sampleEvery })} error={errors.sampleEvery} testId="set-sample-every" {...common} />
          <NumberField label="Seed" value={s.seed} integer onChange={(seed) => set({ seed })} error={errors.seed} {...common} />
        </div>
        <SelectField label="Window order" value={s.order} options={[{ value: 'shuffled', label: 'Shuffled each epoch' }, { value: 'sequential', label: 'In corpus order' }]}
          onChange={(order) => set({ order })} {...common} />
        <SelectField label="Precision" value={s.precision} testId="set-precision" error={errors.precision}
          options={[{ value: 'f32', label: 'f32 (exact, default)' }, { value: 'f16', label: 'f16 weights in matmuls (shader-f16)' }]}
          hint="f16: matmuls read half-precision copies of the weights; sums, master weights, gradients and AdamW moments stay f32."
          onChange={(precision) => set({ precision })} {...common} />
        <CheckField label="Subgroup reductions" checked={s.subgroups} testId="set-subgroups" {...common}
          disabled={common.disabled || (hasSubgroups === false && !s.subgroups)}
          hint={hasSubgroups === false
            ? "This adapter has no WebGPU 'subgroups' feature."
            : 'LayerNorm, cross-entropy and the gradient norm reduce rows with subgroup operations: a little faster, the same math summed in another order (the last bits differ from the default kernels).'}
          onChange={(subgroups) => set({ subgroups })} />
        {errors.subgroups && <p className="field-error" role="alert">{errors.subgroups}</p>}
      </fieldset>
    </section>
  );
}
