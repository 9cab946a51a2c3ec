#!/usr/bin/python3
"""Writes a studio checkpoint at step 0 (format version 1) for one golden training case, so the
PyTorch continuation (src/io/torch-project/train.py) can be checked against the golden files of
test/goldens/ without our engine: the case's initial weights (and LoRA adapters), no optimizer
state, rows_read 0, the case's settings, and the data by absolute path.

  golden_checkpoint.py OUT_DIR CASE [key=json ...]

CASE is full | frozen | accum (test/goldens/gpt2-tiny) or lora | rslora (test/goldens/lora-tiny).
key=json pairs override settings (e.g. order='"shuffled"'); eval=true also names the training
tokens as the held-out data. Prints {"dir", "losses", "grad_norms"}.
"""
import hashlib
import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDENS = os.path.join(HERE, '..', 'goldens')
TINY = os.path.join(GOLDENS, 'gpt2-tiny')


def read_safetensors_raw(path):
    raw = open(path, 'rb').read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop('__metadata__', None)
    return {k: np.frombuffer(raw[8 + n + e['data_offsets'][0]:8 + n + e['data_offsets'][1]], '<f4').reshape(e['shape'])
            for k, e in header.items()}


def write_safetensors(path, tensors):
    header, blobs, off = {'__metadata__': {'format': 'pt'}}, [], 0
    for name, a in tensors:
        b = np.ascontiguousarray(a, dtype='<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((-len(h)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def main():
    out, case_name = sys.argv[1], sys.argv[2]
    overrides = {k: json.loads(v) for k, v in (a.split('=', 1) for a in sys.argv[3:])}
    with_eval = overrides.pop('eval', False)
    lora_case = case_name in ('lora', 'rslora')
    g = json.load(open(os.path.join(GOLDENS, 'lora-tiny' if lora_case else 'gpt2-tiny', 'goldens.json')))
    case = next(c for c in g['cases'] if c['name'] == case_name)
    os.makedirs(out)
    shutil.copyfile(os.path.join(TINY, 'model', 'config.json'), os.path.join(out, 'config.json'))
    shutil.copyfile(os.path.join(TINY, 'model', 'model.safetensors'), os.path.join(out, 'model.safetensors'))
    tokens_path = os.path.abspath(os.path.join(TINY, 'train.bin'))
    tokens = np.fromfile(tokens_path, dtype='<u2')
    T = case['T']
    settings = {
        'steps': case['steps'], 'batch': case['B'], 'seq': T, 'grad_accum': case['grad_accum'], 'lr': case['lr'],
        'schedule': {'kind': 'constant', 'warmup': 0, 'min_lr_ratio': 0, 'cut_frac': 0.1, 'ratio': 32},
        'lr_decay': 1, 'unfreeze': None, 'frozen': case.get('frozen_groups', []),
        'beta1': case['beta1'], 'beta2': case['beta2'], 'eps': case['eps'], 'weight_decay': case['weight_decay'],
        'grad_clip': case['max_grad_norm'], 'dropout': {'embd': 0, 'attn': 0, 'resid': 0}, 'seed': 1337,
        'order': 'sequential', 'lora': None, 'eval_every': 0, 'precision': 'f32',
    }
    if lora_case:
        settings['lora'] = {'r': case['r'], 'alpha': case['lora_alpha'], 'dropout': 0, 'targets': case['target_modules'],
                            'rslora': case['use_rslora']}
        init = read_safetensors_raw(os.path.join(GOLDENS, 'lora-tiny', case['file']))
        names = sorted(k[len('init.'):] for k in init if k.startswith('init.'))
        write_safetensors(os.path.join(out, 'adapter_model.safetensors'),
                          [('base_model.model.transformer.' + n, init['init.' + n]) for n in names])
        json.dump({'peft_type': 'LORA', 'task_type': 'CAUSAL_LM', 'r': case['r'], 'lora_alpha': case['lora_alpha'],
                   'lora_dropout': 0, 'target_modules': case['target_modules'], 'fan_in_fan_out': True, 'bias': 'none',
                   'use_rslora': case['use_rslora'], 'base_model_name_or_path': 'gpt2-tiny'},
                  open(os.path.join(out, 'adapter_config.json'), 'w'), indent=2)
    settings.update(overrides)
    write_safetensors(os.path.join(out, 'optimizer.safetensors'), [])
    state = {
        'format': 'webgpu-finetuning-studio/checkpoint', 'format_version': 1,
        'step': 0, 'total_steps': settings['steps'], 'rows_read': 0, 'windows': (len(tokens) - 1) // T, 'dropout_step': 0,
        'settings': settings,
        'model': {'source': 'gpt2-tiny', 'dir': os.path.abspath(os.path.join(TINY, 'model'))},
        'data': {'train': [tokens_path], 'eval': []},
        'fingerprints': {
            'base_weights': 'sha256:' + '0' * 64,
            'train_tokens': 'sha256:' + hashlib.sha256(tokens.astype('<u4').tobytes()).hexdigest(),
        },
        'kernels': {}, 'log_history': [], 'created': '2026-11-30T00:00:00.000Z', 'writer': 'cli',
    }
    if with_eval:
        state['data']['eval'] = [tokens_path]
        state['fingerprints']['eval_tokens'] = state['fingerprints']['train_tokens']
    json.dump(state, open(os.path.join(out, 'trainer_state.json'), 'w'), indent=2)
    print(json.dumps({'dir': out, 'losses': case['losses'], 'grad_norms': case['grad_norms']}))


if __name__ == '__main__':
    main()
