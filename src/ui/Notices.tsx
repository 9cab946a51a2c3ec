// Page-wide notices: no WebGPU (why, and where it works), a lost GPU device (and that a run can
// start again, or resume from the run's last save), and every error the worker reports, each
// saying what to do (a non-finite training loss pauses the run instead: RunPanel offers the choice).
import { NO_WEBGPU_HELP } from '../engine/errors.ts';
import { send } from './engine.ts';
import { useStudio } from './store.ts';

export function Notices() {
  const adapter = useStudio((s) => s.adapter);
  const errors = useStudio((s) => s.errors);
  const lost = useStudio((s) => s.deviceLost);
  const lastSave = useStudio((s) => s.saved.last);
  const { dismissError } = useStudio.getState();
  return (
    <div className="notices">
      {adapter.status === 'unavailable' && (
        <div className="notice error" role="alert" data-testid="no-webgpu">
          <div>
            <strong>WebGPU is not available here, so the studio cannot train in this browser.</strong>
            <p>{adapter.reason.includes('Chrome') ? adapter.reason : `${adapter.reason} ${NO_WEBGPU_HELP}`}</p>
          </div>
        </div>
      )}
      {lost && (
        <div className="notice warn" role="alert" data-testid="device-lost">
          <strong>The GPU device was lost.</strong>
          <p>{lost}</p>
          {lastSave ? (
            <p>
              <button type="button" data-testid="resume-after-loss" onClick={() => send({ type: 'runResume', id: lastSave.id })}>
                Resume from the last save (step {lastSave.step}) on a new device
              </button>
            </p>
          ) : (
            <p>Press Start to train again — no need to reload the page.</p>
          )}
        </div>
      )}
      {errors.map((e) => (
        <div key={e.id} className="notice error" role="alert" data-testid="error">
          <div>
            <strong>{e.name.replace(/Error$/, '').replace(/([a-z])([A-Z])/g, '$1 $2') || 'Error'}</strong>
            <p>{e.message}</p>
          </div>
          <button type="button" className="close" aria-label="Dismiss this message" onClick={() => dismissError(e.id)}>×</button>
        </div>
      ))}
    </div>
  );
}
