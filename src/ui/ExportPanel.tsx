// Export: the fine-tuned model as a Hugging Face folder (.zip), model.safetensors alone, or the
// LoRA weights (PEFT's folder) when LoRA trained. The worker builds the file; the page saves it.
import { useEffect } from 'react';
import type { ExportFormat } from '../worker/protocol.ts';
import { send } from './engine.ts';
import { Progress } from './fields.tsx';
import { bytes } from './format.ts';
import { useStudio } from './store.ts';

const FORMATS: Array<{ format: ExportFormat; label: string; hint: string }> = [
  { format: 'hf-zip', label: 'Hugging Face folder (.zip)', hint: 'config, weights, tokenizer and a model card: loads with from_pretrained.' },
  { format: 'safetensors', label: 'model.safetensors', hint: 'The weights alone, in Hugging Face names.' },
  { format: 'lora', label: 'LoRA weights (PEFT folder)', hint: 'adapter_config.json + adapter_model.safetensors (PEFT).' },
];

export function ExportPanel() {
  const info = useStudio((s) => s.model.info);
  const exports = useStudio((s) => s.exports);
  const progress = useStudio((s) => s.progress.export);
  const runState = useStudio((s) => s.run.state);
  const lora = useStudio((s) => s.train.lora.enabled);
  // Steps of a run still in progress (paused) count too: an export now holds them.
  const trained = useStudio((s) => s.model.trainedSteps + (s.run.state === 'paused' || s.run.state === 'running' ? s.run.step : 0));
  const { started } = useStudio.getState();
  const busy = exports.pending !== null || runState === 'running' || runState === 'starting' || runState === 'stopping';
  useEffect(() => () => {
    const last = useStudio.getState().exports.last;
    if (last) URL.revokeObjectURL(last.url);
  }, []);

  return (
    <section className="panel" aria-labelledby="export-title" data-testid="export-panel">
      <h2 id="export-title">Export</h2>
      <p className="muted">{info ? (trained > 0 ? `The fine-tuned weights (${trained} steps).` : 'Not fine-tuned yet: an export now holds the loaded weights.') : 'Load a model first.'}</p>
      <ul className="exports">
        {FORMATS.map((f) => (
          <li key={f.format}>
            <button type="button" disabled={!info || busy || (f.format === 'lora' && !lora)} data-testid={`export-${f.format}`}
              onClick={() => {
                started('export', f.format);
                send({ type: 'export', format: f.format });
              }}>
              {exports.pending === f.format ? 'Preparing…' : f.label}
            </button>
            <span className="hint">{f.format === 'lora' && !lora ? 'Turn LoRA on in the settings to train LoRA weights.' : f.hint}</span>
          </li>
        ))}
      </ul>
      {progress && exports.pending && <Progress {...progress} testId="export-progress" />}
      {exports.last && (
        <p data-testid="export-done">
          Saved <a href={exports.last.url} download={exports.last.fileName}>{exports.last.fileName}</a> ({bytes(exports.last.bytes)}).
        </p>
      )}
    </section>
  );
}
