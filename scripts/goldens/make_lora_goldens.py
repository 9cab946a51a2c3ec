#!/usr/bin/python3
"""Golden files from PyTorch for LoRA (PEFT semantics) on the tiny GPT-2 of test/goldens/gpt2-tiny.

Writes test/goldens/lora-tiny/: goldens.json (settings, per-step losses and gradient norms) and
per case <case>.safetensors with the adapters' initial values (init.<name>), their step-0
gradients (grad.<name>), their values after the AdamW steps (final.<name>), and for the first
case the logits of the first batch and the merged Conv1D weights W + s*(B@A).T of the final
adapters for two layers (merged.<base weight name>). Names are the engine's, without the transformer. prefix:
h.{i}.attn.c_attn.lora_A.weight (r, in), h.{i}.attn.c_attn.lora_B.weight (out, r).

The model and the token stream are the committed files of test/goldens/gpt2-tiny (read here with
struct/json), so both golden sets describe the same network. The LoRA wrapping is written by hand
after peft/tuners/lora/layer.py (no peft is installed here): for every targeted Conv1D
(fan_in_fan_out=True, weight (in, out)),
    result = x @ W + b + lora_B(lora_A(dropout(x))) * scaling,   scaling = alpha / r  (alpha / sqrt(r) with use_rslora)
with lora_A = nn.Linear(in, r, bias=False) (weight (r, in)), lora_B = nn.Linear(r, out, bias=False)
(weight (out, r)). A target matches a module whose name equals it or ends with '.' + target
(peft check_target_module_exists), so 'c_proj' adapts both attn.c_proj and mlp.c_proj.
A starts as PEFT's nn.init.kaiming_uniform_(A, a=sqrt(5)); B starts at small random values
instead of PEFT's zeros so that the gradients of A are not zero at step 0. Only A and B train
(the base parameters have requires_grad False), with torch.optim.AdamW over them (both 2-D, so
both decay, as transformers' Trainer does), clip_grad_norm_ over the adapters' gradients.
Float64 throughout, dropout 0.

Run with Debian's python3 and its PyTorch: /usr/bin/python3 scripts/goldens/make_lora_goldens.py
Deterministic: re-running gives identical bytes.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

# The safetensors writer and GELU are the GPT-2 goldens' (same folder).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_goldens import gelu_new, write_safetensors  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, '..', '..', 'test', 'goldens', 'gpt2-tiny')
OUT = os.path.join(HERE, '..', '..', 'test', 'goldens', 'lora-tiny')

MODULES = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']
HYPER = dict(lr=5e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
STEPS = 5
T = 37
# merged weights stored for two layers only (files stay small): one c_attn (in, 3C), one MLP c_proj (4C, C)
MERGED_SAMPLE = ['h.0.attn.c_attn', 'h.1.mlp.c_proj']

# max_grad_norm sits inside each case's range of gradient norms, so clipping acts on some steps
# and not on others (goldens.json lists which).
CASES = [
    dict(name='lora', r=4, alpha=8.0, use_rslora=False, targets=['c_attn', 'c_proj', 'c_fc'], B=2, grad_accum=1,
         max_grad_norm=0.18, seed=11, extras=True),
    dict(name='rslora', r=2, alpha=4.0, use_rslora=True, targets=['c_attn'], B=1, grad_accum=2,
         max_grad_norm=0.03, seed=12, extras=False),
]


def read_safetensors(path):
    raw = open(path, 'rb').read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop('__metadata__', None)
    out = {}
    for name, e in header.items():
        assert e['dtype'] == 'F32'
        b, end = e['data_offsets']
        a = np.frombuffer(raw[8 + n + b:8 + n + end], dtype='<f4').reshape(e['shape'])
        out[name] = torch.tensor(a.astype(np.float64))
    return out


def load_model():
    cfg = json.load(open(os.path.join(BASE, 'model', 'config.json')))
    params = {k[len('transformer.'):]: v for k, v in read_safetensors(os.path.join(BASE, 'model', 'model.safetensors')).items()}
    tokens = np.frombuffer(open(os.path.join(BASE, 'train.bin'), 'rb').read(), dtype='<u2')
    return cfg, params, tokens



def module_shape(cfg, m):
    C = cfg['n_embd']
    I = cfg.get('n_inner') or 4 * C
    return {'attn.c_attn': (C, 3 * C), 'attn.c_proj': (C, C), 'mlp.c_fc': (C, I), 'mlp.c_proj': (I, C)}[m]


def targeted(cfg, targets):
    """[(layer, module)] that PEFT adapts: key == target or key ends with '.' + target."""
    out = []
    for i in range(cfg['n_layer']):
        for m in MODULES:
            key = 'transformer.h.%d.%s' % (i, m)
            if any(key == t or key.endswith('.' + t) for t in targets):
                out.append((i, m))
    return out


def forward(cfg, p, lora, scaling, idx):
    """logits (B, T, V) of the LoRA-wrapped GPT2LMHeadModel in float64 (dropout 0)."""
    C, NH, L = cfg['n_embd'], cfg['n_head'], cfg['n_layer']
    HS = C // NH
    eps = cfg['layer_norm_epsilon']
    B_, T_ = idx.shape

    def conv1d(name, x):
        y = x @ p[name + '.weight'] + p[name + '.bias']
        if name + '.lora_A.weight' in lora:
            # peft lora.Linear.forward: lora_B(lora_A(dropout(x))) * scaling, nn.Linear weights
            y = y + F.linear(F.linear(x, lora[name + '.lora_A.weight']), lora[name + '.lora_B.weight']) * scaling
        return y

    x = p['wte.weight'][idx] + p['wpe.weight'][:T_]
    mask = torch.tril(torch.ones(T_, T_, dtype=torch.bool))
    for i in range(L):
        pre = 'h.%d.' % i
        h = F.layer_norm(x, (C,), p[pre + 'ln_1.weight'], p[pre + 'ln_1.bias'], eps)
        q, k, v = conv1d(pre + 'attn.c_attn', h).split(C, dim=2)
        q, k, v = (t.view(B_, T_, NH, HS).transpose(1, 2) for t in (q, k, v))
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(HS)).masked_fill(~mask, float('-inf')).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B_, T_, C)
        x = x + conv1d(pre + 'attn.c_proj', y)
        h = F.layer_norm(x, (C,), p[pre + 'ln_2.weight'], p[pre + 'ln_2.bias'], eps)
        x = x + conv1d(pre + 'mlp.c_proj', gelu_new(conv1d(pre + 'mlp.c_fc', h)))
    x = F.layer_norm(x, (C,), p['ln_f.weight'], p['ln_f.bias'], eps)
    return x @ p['wte.weight'].T


def batch(tokens, B_, row):
    W = (len(tokens) - 1) // T
    xs, ys = [], []
    for b in range(B_):
        w = (row + b) % W
        xs.append(tokens[w * T:w * T + T])
        ys.append(tokens[w * T + 1:w * T + T + 1])
    return torch.tensor(np.array(xs, dtype=np.int64)), torch.tensor(np.array(ys, dtype=np.int64))


def init_adapters(cfg, case):
    """A: kaiming_uniform_(a=sqrt(5)) as PEFT; B: 0.02 * randn (not PEFT's zeros, see the docstring). Float32 values."""
    torch.manual_seed(case['seed'])
    out = {}
    for i, m in targeted(cfg, case['targets']):
        fan_in, fan_out = module_shape(cfg, m)
        A = torch.empty(case['r'], fan_in, dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5))
        B = 0.02 * torch.randn(fan_out, case['r'], dtype=torch.float32)
        name = 'h.%d.%s' % (i, m)
        out[name + '.lora_A.weight'] = A.to(torch.float64)
        out[name + '.lora_B.weight'] = B.to(torch.float64)
    return out


def run_case(cfg, base, tokens, case):
    V = cfg['vocab_size']
    scaling = case['alpha'] / math.sqrt(case['r']) if case['use_rslora'] else case['alpha'] / case['r']
    init = init_adapters(cfg, case)
    lora = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    names = list(lora)
    opt = torch.optim.AdamW([lora[n] for n in names], lr=HYPER['lr'], betas=(HYPER['beta1'], HYPER['beta2']),
                            eps=HYPER['eps'], weight_decay=HYPER['weight_decay'], foreach=False)
    B_, M = case['B'], case['grad_accum']
    out = {('init.' + n): init[n] for n in names}
    losses, norms = [], []
    first_loss = None
    for s in range(STEPS):
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for m in range(M):
            x, y = batch(tokens, B_, (s * M + m) * B_)
            logits = forward(cfg, base, lora, scaling, x)
            loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            if s == 0 and m == 0:
                first_loss = loss.item()
                if case['extras']:
                    out['logits'] = logits.detach().clone()
            (loss / M).backward()
            step_loss += loss.item() / M
        if s == 0:
            for n in names:
                out['grad.' + n] = lora[n].grad.detach().clone()
        norm = torch.nn.utils.clip_grad_norm_([lora[n] for n in names], case['max_grad_norm'])
        losses.append(step_loss)
        norms.append(norm.item())
        opt.step()
    for n in names:
        out['final.' + n] = lora[n].detach().clone()
    if case['extras']:
        merged_p = dict(base)
        for i, m in targeted(cfg, case['targets']):
            name = 'h.%d.%s' % (i, m)
            A = lora[name + '.lora_A.weight'].detach()
            B = lora[name + '.lora_B.weight'].detach()
            # peft get_delta_weight: transpose(B @ A, fan_in_fan_out) * scaling
            merged_p[name + '.weight'] = base[name + '.weight'] + (B @ A).T * scaling
            if name in MERGED_SAMPLE:
                out['merged.' + name + '.weight'] = merged_p[name + '.weight']
        # the merged model computes the same function as base + adapters
        x, _ = batch(tokens, 1, 0)
        a = forward(cfg, merged_p, {}, 0.0, x)
        b = forward(cfg, base, {k: v.detach() for k, v in lora.items()}, scaling, x)
        assert torch.allclose(a, b, rtol=0, atol=1e-12), 'merged weights do not reproduce the adapters'
    return out, names, scaling, first_loss, losses, norms



def main():
    os.makedirs(OUT, exist_ok=True)
    cfg, base, tokens = load_model()
    cases = []
    for case in CASES:
        out, names, scaling, first_loss, losses, norms = run_case(cfg, base, tokens, case)
        order = (['logits'] if 'logits' in out else []) + ['init.' + n for n in names] + ['grad.' + n for n in names] + \
            ['final.' + n for n in names] + sorted(k for k in out if k.startswith('merged.'))
        fname = case['name'] + '.safetensors'
        write_safetensors(os.path.join(OUT, fname), [(k, out[k]) for k in order])
        cases.append({
            'name': case['name'], 'file': fname, 'r': case['r'], 'lora_alpha': case['alpha'], 'lora_dropout': 0.0,
            'use_rslora': case['use_rslora'], 'target_modules': case['targets'], 'scaling': scaling,
            'adapted': ['h.%d.%s' % (i, m) for i, m in targeted(cfg, case['targets'])],
            'B': case['B'], 'T': T, 'grad_accum': case['grad_accum'], 'steps': STEPS, **HYPER,
            'max_grad_norm': case['max_grad_norm'],
            'first_micro_loss': first_loss, 'losses': losses, 'grad_norms': norms,
            'clipped_steps': [s for s, n in enumerate(norms) if n + 1e-6 > case['max_grad_norm']],
        })
    with open(os.path.join(OUT, 'goldens.json'), 'w') as f:
        json.dump({
            'generator': 'scripts/goldens/make_lora_goldens.py (PyTorch %s, float64, dropout 0)' % torch.__version__.split('a')[0],
            'model_dir': '../gpt2-tiny/model',
            'tokens': {'file': '../gpt2-tiny/train.bin', 'format': 'nanoGPT uint16 little-endian', 'count': int(len(tokens))},
            'tensors': {
                'init.<name>': 'adapters before training (A kaiming-uniform as PEFT, B small random)',
                'grad.<name>': 'gradient of step 0 (mean loss over all targets of the step, accumulated)',
                'final.<name>': 'adapters after all steps',
                'logits': '(B, T, V) of the first micro-batch of step 0 (first case only)',
                'merged.<weight>': 'W + scaling * (B @ A).T of the final adapters (first case only; h.0.attn.c_attn and h.1.mlp.c_proj)',
            },
            'trainable': 'only lora_A and lora_B; every base parameter is frozen',
            'cases': cases,
        }, f, indent=2)
        f.write('\n')


if __name__ == '__main__':
    main()
