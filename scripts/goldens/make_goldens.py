#!/usr/bin/python3
"""Golden files from PyTorch for the GPT-2 reference and engine tests.

Writes test/goldens/gpt2-tiny/: a tiny GPT-2 checkpoint in the Hugging Face layout
(model/config.json, model/model.safetensors), a nanoGPT uint16 token file (train.bin), and for
three training cases the first batch's logits, loss and parameter gradients, then 10 AdamW steps
with clipping (per-step loss, grad_norm before clipping, final parameters):
  full    B=2, every parameter trains
  frozen  B=2, embeddings (wte, wpe; so also the tied head) and block 0 frozen
  accum   B=1 micro-batches, gradient accumulation 2
Hyperparameters and per-step numbers go to goldens.json, tensors to <case>.safetensors.

The model is written here from the semantics in docs/ARCHITECTURE.md (Hugging Face
GPT2LMHeadModel: Conv1D weights (in, out), pre-LayerNorm blocks, causal attention scaled by
1/sqrt(head size), gelu_new, LM head tied to wte), in float64 with dropout 0. Initial weights
follow HF's GPT2PreTrainedModel._init_weights (normal std 0.02; c_proj weights std
0.02/sqrt(2L); biases 0; LayerNorm 1 and 0), then LayerNorm parameters and biases are perturbed
so their gradients are not trivial, and everything is rounded to float32 so the F32 checkpoint
holds exactly the weights the float64 computation starts from.

Real-vocabulary cases (V = 50257, GPT-2's tokenizer size), each in its own folder:
  gpt2-v50257-c32   C=32, L=1, NH=4, T=16, B=2, 5 steps: the LM head over a real vocabulary
  gpt2-v50257-c768  C=768, L=1, NH=12, T=8, B=1, 3 steps: wte is 50257 x 768 x 4 = 147 MiB,
                    more than the 128 MiB that Mesa lavapipe (and many laptop adapters) bind at
                    once, so the engine binds it in row ranges
Their initial weights are not stored (wte alone would be 6-147 MB): every value is generated
from a counter-based hash (lowbias32, Chris Wellons, as the engine's dropout RNG uses), which
the TypeScript side regenerates bit for bit (test/helpers/vocab-goldens.ts); goldens.json
carries checksums of the generated weights so a mismatch shows before any comparison. For the
same reason large tensors are stored as fixed samples of elements (indices again from the hash)
plus their norms and sums; small tensors, the wpe gradient and full wte rows of chosen tokens
are stored whole.

Run with Debian's python3 and its PyTorch: /usr/bin/python3 scripts/goldens/make_goldens.py
[tiny] [v50257-c32] [v50257-c768] (default: all). The output is deterministic (single thread,
fixed seeds): re-running gives identical bytes.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'goldens', 'gpt2-tiny')

# Sizes: nothing a multiple of a GPU workgroup.
V, P, C, NH, L, T = 311, 64, 48, 4, 2, 37
HS = C // NH
EPS_LN = 1e-5
STEPS = 10
N_WINDOWS = 21  # 10 steps x 2 rows = 20 windows, plus one spare
N_TOKENS = N_WINDOWS * T + 1 + 3  # a few spare ids after the last full window

HYPER = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)

# max_grad_norm (clip_grad_norm_) per case sits inside the range of that case's gradient norms,
# so clipping is active on some steps and not on others (goldens.json lists which): with all
# parameters training the norms are about 1.0-1.2, with the embeddings and block 0 frozen 0.43-0.54.
CASES = [
    dict(name='full', B=2, grad_accum=1, frozen_groups=[], max_grad_norm=1.1),
    dict(name='frozen', B=2, grad_accum=1, frozen_groups=[0, 1], max_grad_norm=0.5),  # embeddings, block 0
    dict(name='accum', B=1, grad_accum=2, frozen_groups=[], max_grad_norm=1.1),
]

BLOCK = [  # (name, shape) per block, HF order
    ('ln_1.weight', (C,)), ('ln_1.bias', (C,)),
    ('attn.c_attn.weight', (C, 3 * C)), ('attn.c_attn.bias', (3 * C,)),
    ('attn.c_proj.weight', (C, C)), ('attn.c_proj.bias', (C,)),
    ('ln_2.weight', (C,)), ('ln_2.bias', (C,)),
    ('mlp.c_fc.weight', (C, 4 * C)), ('mlp.c_fc.bias', (4 * C,)),
    ('mlp.c_proj.weight', (4 * C, C)), ('mlp.c_proj.bias', (C,)),
]


def param_layout():
    """[(name, shape, depth group)]: embeddings 0, block i at i+1, ln_f at L+1."""
    out = [('wte.weight', (V, C), 0), ('wpe.weight', (P, C), 0)]
    for i in range(L):
        out += [(f'h.{i}.{n}', s, i + 1) for n, s in BLOCK]
    out += [('ln_f.weight', (C,), L + 1), ('ln_f.bias', (C,), L + 1)]
    return out


def init_params():
    """HF-style init in float32, perturbed, returned as float64 copies of the float32 values."""
    g = torch.Generator().manual_seed(20240611)
    params = {}
    for name, shape, _ in param_layout():
        t = torch.zeros(shape, dtype=torch.float32)
        if name.endswith('ln_1.weight') or name.endswith('ln_2.weight') or name == 'ln_f.weight':
            t = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float32)
        elif name.endswith('ln_1.bias') or name.endswith('ln_2.bias') or name == 'ln_f.bias':
            t = 0.05 * torch.randn(shape, generator=g, dtype=torch.float32)
        elif name.endswith('.bias'):
            t = 0.02 * torch.randn(shape, generator=g, dtype=torch.float32)
        elif name.endswith('c_proj.weight'):
            t = (0.02 / math.sqrt(2 * L)) * torch.randn(shape, generator=g, dtype=torch.float32)
        else:  # wte, wpe, c_attn, c_fc weights
            t = 0.02 * torch.randn(shape, generator=g, dtype=torch.float32)
        params[name] = t.contiguous().to(torch.float64)
    return params


def make_tokens():
    """A token stream with learnable structure: each id has 4 likely successors."""
    rs = np.random.RandomState(7)
    succ = rs.randint(0, V, size=(V, 4))
    ids = [int(rs.randint(0, V))]
    for _ in range(N_TOKENS - 1):
        ids.append(int(succ[ids[-1], rs.randint(0, 4)]) if rs.rand() < 0.8 else int(rs.randint(0, V)))
    return np.array(ids, dtype='<u2')


def gelu_new(x):
    # HF NewGELUActivation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def forward(p, idx):
    """logits (B, T, V) of GPT2LMHeadModel in float64."""
    B_, T_ = idx.shape
    x = p['wte.weight'][idx] + p['wpe.weight'][:T_]
    mask = torch.tril(torch.ones(T_, T_, dtype=torch.bool))
    for i in range(L):
        q_ = lambda n: p[f'h.{i}.{n}']
        h = F.layer_norm(x, (C,), q_('ln_1.weight'), q_('ln_1.bias'), EPS_LN)
        qkv = h @ q_('attn.c_attn.weight') + q_('attn.c_attn.bias')
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B_, T_, NH, HS).transpose(1, 2) for t in (q, k, v))  # (B, NH, T, hs)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(HS)
        att = att.masked_fill(~mask, float('-inf')).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B_, T_, C)
        x = x + (y @ q_('attn.c_proj.weight') + q_('attn.c_proj.bias'))
        h = F.layer_norm(x, (C,), q_('ln_2.weight'), q_('ln_2.bias'), EPS_LN)
        h = gelu_new(h @ q_('mlp.c_fc.weight') + q_('mlp.c_fc.bias'))
        x = x + (h @ q_('mlp.c_proj.weight') + q_('mlp.c_proj.bias'))
    x = F.layer_norm(x, (C,), p['ln_f.weight'], p['ln_f.bias'], EPS_LN)
    return x @ p['wte.weight'].T


def batch(tokens, B_, row):
    """Sequential windows: the j-th row read since the start is window j mod W."""
    W = (len(tokens) - 1) // T
    xs, ys = [], []
    for b in range(B_):
        w = (row + b) % W
        xs.append(tokens[w * T:w * T + T])
        ys.append(tokens[w * T + 1:w * T + T + 1])
    return torch.tensor(np.array(xs, dtype=np.int64)), torch.tensor(np.array(ys, dtype=np.int64))


def run_case(case, init, tokens):
    B_, M = case['B'], case['grad_accum']
    layout = param_layout()
    frozen = set(case['frozen_groups'])
    p = {n: init[n].clone().requires_grad_(g not in frozen) for n, _, g in layout}
    trainable = [(n, s) for n, s, g in layout if g not in frozen]
    decay = [p[n] for n, s in trainable if len(s) >= 2]
    no_decay = [p[n] for n, s in trainable if len(s) < 2]
    opt = torch.optim.AdamW(
        [{'params': decay, 'weight_decay': HYPER['weight_decay']}, {'params': no_decay, 'weight_decay': 0.0}],
        lr=HYPER['lr'], betas=(HYPER['beta1'], HYPER['beta2']), eps=HYPER['eps'], foreach=False)
    out = {}
    losses, norms = [], []
    for s in range(STEPS):
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for m in range(M):
            x, y = batch(tokens, B_, (s * M + m) * B_)
            logits = forward(p, x)
            loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            if s == 0 and m == 0:
                out['logits'] = logits.detach().clone()
                out['first_micro_loss'] = loss.item()
            (loss / M).backward()
            step_loss += loss.item() / M
        if s == 0:
            for n, _ in trainable:
                out['grad.' + n] = p[n].grad.detach().clone()
        norm = torch.nn.utils.clip_grad_norm_([p[n] for n, _ in trainable], case['max_grad_norm'])
        losses.append(step_loss)
        norms.append(norm.item())
        opt.step()
    for n, _, g in layout:
        out['final.' + n] = p[n].detach().clone()
        if g in frozen:
            assert torch.equal(p[n].detach(), init[n]), f'frozen {n} changed'
    return out, losses, norms


def write_safetensors(path, tensors):
    """safetensors by hand: u64 LE header length, JSON header padded with spaces to a multiple
    of 8, then the tensors packed in order as little-endian F32."""
    header = {'__metadata__': {'format': 'pt'}}
    blobs = []
    offset = 0
    for name, t in tensors:
        data = t.detach().to(torch.float32).contiguous().numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(',', ':')).encode('utf-8')
    h += b' ' * ((-len(h)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2)
        f.write('\n')


def main():
    os.makedirs(os.path.join(OUT, 'model'), exist_ok=True)
    init = init_params()
    layout = param_layout()
    write_json(os.path.join(OUT, 'model', 'config.json'), {
        'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2',
        'vocab_size': V, 'n_positions': P, 'n_ctx': P, 'n_embd': C, 'n_layer': L, 'n_head': NH,
        'n_inner': None, 'activation_function': 'gelu_new', 'layer_norm_epsilon': EPS_LN,
        'embd_pdrop': 0.0, 'attn_pdrop': 0.0, 'resid_pdrop': 0.0, 'summary_first_dropout': 0.0,
        'initializer_range': 0.02, 'scale_attn_weights': True,
        'scale_attn_by_inverse_layer_idx': False, 'reorder_and_upcast_attn': False,
        'use_cache': True, 'bos_token_id': V - 1, 'eos_token_id': V - 1,
        'tie_word_embeddings': True, 'torch_dtype': 'float32',
    })
    write_safetensors(os.path.join(OUT, 'model', 'model.safetensors'),
                      [('transformer.' + n, init[n]) for n, _, _ in layout])
    tokens = make_tokens()
    with open(os.path.join(OUT, 'train.bin'), 'wb') as f:
        f.write(tokens.tobytes())

    cases = []
    for case in CASES:
        out, losses, norms = run_case(case, init, tokens)
        names = ['logits'] + ['grad.' + n for n, _, g in layout if 'grad.' + n in out] + \
                ['final.' + n for n, _, _ in layout]
        fname = case['name'] + '.safetensors'
        write_safetensors(os.path.join(OUT, fname), [(n, out[n]) for n in names])
        cases.append({
            **case,
            'file': fname,
            'T': T,
            'steps': STEPS,
            **HYPER,
            'weight_decay_on': 'tensors with two or more dimensions (biases and LayerNorm parameters are not decayed)',
            'first_micro_loss': out['first_micro_loss'],
            'losses': losses,
            'grad_norms': norms,
            'clipped_steps': [s for s, n in enumerate(norms) if n + 1e-6 > case['max_grad_norm']],
        })
    write_json(os.path.join(OUT, 'goldens.json'), {
        'generator': 'scripts/goldens/make_goldens.py (PyTorch %s, float64, dropout 0)' % torch.__version__.split('a')[0],
        'model_dir': 'model',
        'tokens': {'file': 'train.bin', 'format': 'nanoGPT uint16 little-endian', 'count': int(len(tokens))},
        'order': 'sequential: the j-th batch row read since the start of training is window j mod W, W = floor((count - 1) / T)',
        'tensors': {
            'logits': '(B, T, V) of the first micro-batch of step 0, before any update',
            'grad.<name>': 'gradient of step 0 (mean loss over all targets of the step, accumulated), trainable parameters only',
            'final.<name>': 'every parameter after all steps, rounded to float32',
        },
        'frozen_groups': 'depth groups: 0 embeddings (wte, wpe; wte is also the tied head), block i at i+1, ln_f at L+1',
        'cases': cases,
    })


# ---------------------------------------------------------------------------------------------
# Real-vocabulary cases

GOLDENS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'goldens')
M32 = np.uint64(0xFFFFFFFF)
INIT_SEED = 0x5EED2024
SAMPLE_SEED = 0x5A3B1E
SAMPLES = 4096

VOCAB_CASES = {
    'v50257-c32': dict(V=50257, P=32, C=32, NH=4, L=1, T=16, B=2, steps=5, lr=3e-3, weight_decay=0.1,
                       wte_rows=[0, 1, 7, 220, 50255, 50256]),
    # lavapipe binds 128 MiB: wte rows per binding range = floor(2^27 / 3072 / 64) * 64 = 43648
    'v50257-c768': dict(V=50257, P=32, C=768, NH=12, L=1, T=8, B=1, steps=3, lr=1e-3, weight_decay=0.1,
                        wte_rows=[0, 1, 43647, 43648, 43649, 50256]),
}


def lowbias32(x):
    """lowbias32 on uint64 arrays holding u32 values (wrapping multiplies done mod 2^32)."""
    x = np.asarray(x, dtype=np.uint64) & M32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7feb352d)) & M32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846ca68b)) & M32
    x ^= x >> np.uint64(16)
    return x


def hashed_uniform(key, n):
    """(n) float64 in (-1, 1): 2u - 1 with u = (hash(key ^ i) >> 8) / 2^24 + 2^-25, exact in float64."""
    i = np.arange(n, dtype=np.uint64)
    h = lowbias32(np.uint64(key) ^ i)
    u = (h >> np.uint64(8)).astype(np.float64) * 2.0 ** -24 + 2.0 ** -25
    return 2.0 * u - 1.0


def tensor_key(seed, k):
    return int(lowbias32(np.uint64((seed + k * 0x9E3779B9) & 0xFFFFFFFF)))


def vocab_layout(cfg):
    C, L = cfg['C'], cfg['L']
    out = [('wte.weight', (cfg['V'], C), 0), ('wpe.weight', (cfg['P'], C), 0)]
    block = [  # (name, shape) per block, HF order
        ('ln_1.weight', (C,)), ('ln_1.bias', (C,)),
        ('attn.c_attn.weight', (C, 3 * C)), ('attn.c_attn.bias', (3 * C,)),
        ('attn.c_proj.weight', (C, C)), ('attn.c_proj.bias', (C,)),
        ('ln_2.weight', (C,)), ('ln_2.bias', (C,)),
        ('mlp.c_fc.weight', (C, 4 * C)), ('mlp.c_fc.bias', (4 * C,)),
        ('mlp.c_proj.weight', (4 * C, C)), ('mlp.c_proj.bias', (C,)),
    ]
    for i in range(L):
        out += [(f'h.{i}.{n}', s, i + 1) for n, s in block]
    out += [('ln_f.weight', (C,), L + 1), ('ln_f.bias', (C,), L + 1)]
    return out


def init_scale(name, L):
    """(offset, half-width / sqrt(3) = std) by HF's init: 0.02, c_proj 0.02/sqrt(2L), LayerNorm near 1, biases small."""
    if name.endswith(('ln_1.weight', 'ln_2.weight')) or name == 'ln_f.weight':
        return 1.0, 0.1
    if name.endswith(('ln_1.bias', 'ln_2.bias')) or name == 'ln_f.bias':
        return 0.0, 0.05
    if name.endswith('.bias'):
        return 0.0, 0.02
    if name.endswith('c_proj.weight'):
        return 0.0, 0.02 / math.sqrt(2 * L)
    return 0.0, 0.02


def vocab_init(cfg):
    """Uniform weights with HF's standard deviations: offset + (2u - 1) * (std * sqrt(3)), rounded to float32."""
    params = {}
    for k, (name, shape, _) in enumerate(vocab_layout(cfg)):
        n = int(np.prod(shape))
        offset, std = init_scale(name, cfg['L'])
        x = offset + hashed_uniform(tensor_key(INIT_SEED, k), n) * (std * math.sqrt(3.0))
        params[name] = torch.from_numpy(x.astype(np.float32).astype(np.float64).reshape(shape))
    return params


def sample_indices(k, numel):
    """SAMPLES element indices of tensor k (layout order): hash(key ^ j) mod numel."""
    h = lowbias32(np.uint64(tensor_key(SAMPLE_SEED, k)) ^ np.arange(SAMPLES, dtype=np.uint64))
    return (h % np.uint64(numel)).astype(np.int64)


def vocab_tokens(cfg):
    """Windows of T+1 for every row of every step, plus one spare; the first window visits wte_rows."""
    rs = np.random.RandomState(11)
    n = (cfg['steps'] * cfg['B'] + 1) * cfg['T'] + 1
    ids = rs.randint(0, cfg['V'], size=n)
    for j, r in enumerate(cfg['wte_rows']):
        ids[1 + 2 * j] = r
    return ids.astype('<u2')


def vocab_forward(p, idx, cfg):
    """logits (B, T, V) of GPT2LMHeadModel in float64 (the same model as forward() above)."""
    B_, T_ = idx.shape
    C, NH, L = cfg['C'], cfg['NH'], cfg['L']
    HS_ = C // NH
    x = p['wte.weight'][idx] + p['wpe.weight'][:T_]
    mask = torch.tril(torch.ones(T_, T_, dtype=torch.bool))
    for i in range(L):
        q_ = lambda n: p[f'h.{i}.{n}']
        h = F.layer_norm(x, (C,), q_('ln_1.weight'), q_('ln_1.bias'), EPS_LN)
        qkv = h @ q_('attn.c_attn.weight') + q_('attn.c_attn.bias')
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B_, T_, NH, HS_).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(HS_)
        att = att.masked_fill(~mask, float('-inf')).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B_, T_, C)
        x = x + (y @ q_('attn.c_proj.weight') + q_('attn.c_proj.bias'))
        h = F.layer_norm(x, (C,), q_('ln_2.weight'), q_('ln_2.bias'), EPS_LN)
        h = gelu_new(h @ q_('mlp.c_fc.weight') + q_('mlp.c_fc.bias'))
        x = x + (h @ q_('mlp.c_proj.weight') + q_('mlp.c_proj.bias'))
    x = F.layer_norm(x, (C,), p['ln_f.weight'], p['ln_f.bias'], EPS_LN)
    return x @ p['wte.weight'].T


def vocab_batch(tokens, cfg, row):
    T_ = cfg['T']
    W = (len(tokens) - 1) // T_
    xs, ys = [], []
    for b in range(cfg['B']):
        w = (row + b) % W
        xs.append(tokens[w * T_:w * T_ + T_])
        ys.append(tokens[w * T_ + 1:w * T_ + T_ + 1])
    return torch.tensor(np.array(xs, dtype=np.int64)), torch.tensor(np.array(ys, dtype=np.int64))


def stats(t):
    t = t.detach().reshape(-1)
    return {'norm': float(torch.linalg.vector_norm(t)), 'sum': float(t.sum())}


def run_vocab_case(name, cfg):
    out_dir = os.path.join(GOLDENS, 'gpt2-' + name)
    os.makedirs(out_dir, exist_ok=True)
    layout = vocab_layout(cfg)
    init = vocab_init(cfg)
    tokens = vocab_tokens(cfg)
    with open(os.path.join(out_dir, 'train.bin'), 'wb') as f:
        f.write(tokens.tobytes())
    V_, C_ = cfg['V'], cfg['C']
    # A tensor is "large" when storing it whole would cost more than its samples.
    large = {n for n, s, _ in layout if int(np.prod(s)) > 8 * SAMPLES}
    p = {n: init[n].clone().requires_grad_(True) for n, _, _ in layout}
    decay = [p[n] for n, s, _ in layout if len(s) >= 2]
    no_decay = [p[n] for n, s, _ in layout if len(s) < 2]

    # Clip threshold just under the first step's gradient norm: step 0 is clipped, later steps may not be.
    x0, y0 = vocab_batch(tokens, cfg, 0)
    F.cross_entropy(vocab_forward(p, x0, cfg).reshape(-1, V_), y0.reshape(-1)).backward()
    max_norm = round(0.9 * torch.nn.utils.clip_grad_norm_(list(p.values()), float('inf')).item(), 4)
    for t in p.values():
        t.grad = None

    opt = torch.optim.AdamW(
        [{'params': decay, 'weight_decay': cfg['weight_decay']}, {'params': no_decay, 'weight_decay': 0.0}],
        lr=cfg['lr'], betas=(0.9, 0.999), eps=1e-8, foreach=False)
    tensors = []
    summary = {'grad': {}, 'final': {}, 'init': {}}
    losses, norms = [], []
    for s in range(cfg['steps']):
        opt.zero_grad(set_to_none=True)
        x, y = vocab_batch(tokens, cfg, s * cfg['B'])
        logits = vocab_forward(p, x, cfg)
        row_losses = F.cross_entropy(logits.reshape(-1, V_), y.reshape(-1), reduction='none')
        loss = row_losses.mean()
        if s == 0:
            first_loss = loss.item()
            tensors.append(('row_losses', row_losses.detach()))
            cols = sample_indices(len(layout), V_)[:1024]  # a fixed set of vocabulary columns
            tensors.append(('logits_sample', logits.detach().reshape(-1, V_)[:, torch.from_numpy(cols)]))
        loss.backward()
        if s == 0:
            for k, (n, shape, _) in enumerate(layout):
                g = p[n].grad.detach().clone()  # clip_grad_norm_ below scales .grad in place
                summary['grad'][n] = stats(g)
                if n == 'wte.weight':
                    tensors.append(('grad_rows.wte.weight', g[torch.tensor(cfg['wte_rows'])]))
                if n in large:
                    tensors.append(('grad_sample.' + n, g.reshape(-1)[torch.from_numpy(sample_indices(k, g.numel()))]))
                else:
                    tensors.append(('grad.' + n, g))
        norm = torch.nn.utils.clip_grad_norm_(list(p.values()), max_norm)
        losses.append(loss.item())
        norms.append(norm.item())
        opt.step()
    for k, (n, shape, _) in enumerate(layout):
        t = p[n].detach()
        summary['final'][n] = stats(t)
        summary['init'][n] = {'sum': float(init[n].sum()), 'first': [float(v) for v in init[n].reshape(-1)[:4]]}
        if n == 'wte.weight':
            tensors.append(('final_rows.wte.weight', t[torch.tensor(cfg['wte_rows'])]))
        if n in large:
            tensors.append(('final_sample.' + n, t.reshape(-1)[torch.from_numpy(sample_indices(k, t.numel()))]))
        else:
            tensors.append(('final.' + n, t))
    write_safetensors(os.path.join(out_dir, 'case.safetensors'), tensors)
    write_json(os.path.join(out_dir, 'goldens.json'), {
        'generator': 'scripts/goldens/make_goldens.py (PyTorch %s, float64, dropout 0)' % torch.__version__.split('a')[0],
        'config': {
            'vocab_size': V_, 'n_positions': cfg['P'], 'n_embd': C_, 'n_layer': cfg['L'], 'n_head': cfg['NH'],
            'n_inner': None, 'activation_function': 'gelu_new', 'layer_norm_epsilon': EPS_LN,
            'embd_pdrop': 0.0, 'attn_pdrop': 0.0, 'resid_pdrop': 0.0,
        },
        'init': {
            'rule': 'tensor k of the layout (wte, wpe, blocks, ln_f; HF order): key = lowbias32((seed + k * 0x9E3779B9) mod 2^32); '
                    'element i: u = (lowbias32(key ^ i) >> 8) / 2^24 + 2^-25; value = float32(offset + (2u - 1) * std * sqrt(3))',
            'seed': INIT_SEED,
            'checks': summary['init'],
        },
        'samples': {
            'rule': 'tensor k: key = lowbias32((seed + k * 0x9E3779B9) mod 2^32); index j = lowbias32(key ^ j) mod numel, j < count; '
                    'logits_sample columns: the first 1024 indices with k = number of tensors and numel = V',
            'seed': SAMPLE_SEED,
            'count': SAMPLES,
            'large': sorted(large),
        },
        'tokens': {'file': 'train.bin', 'format': 'nanoGPT uint16 little-endian', 'count': int(len(tokens))},
        'B': cfg['B'], 'T': cfg['T'], 'grad_accum': 1, 'steps': cfg['steps'], 'frozen_groups': [],
        'lr': cfg['lr'], 'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8, 'weight_decay': cfg['weight_decay'],
        'max_grad_norm': max_norm,
        'wte_rows': cfg['wte_rows'],
        'first_micro_loss': first_loss,
        'losses': losses,
        'grad_norms': norms,
        'clipped_steps': [s for s, n in enumerate(norms) if n + 1e-6 > max_norm],
        'stats': {'grad': summary['grad'], 'final': summary['final']},
        'tensors': {
            'row_losses': '(B*T) cross-entropy per position of step 0',
            'logits_sample': '(B*T, 1024) logits of step 0 at the sampled vocabulary columns',
            'grad.<name> / grad_sample.<name>': 'step-0 gradient, whole or at the sampled indices',
            'grad_rows.wte.weight / final_rows.wte.weight': 'rows wte_rows of the wte gradient (step 0) / final wte',
            'final.<name> / final_sample.<name>': 'parameters after all steps, whole or sampled',
        },
    })


if __name__ == '__main__':
    import sys
    which = sys.argv[1:] or ['tiny', *VOCAB_CASES]
    for w in which:
        if w == 'tiny':
            main()
        elif w in VOCAB_CASES:
            run_vocab_case(w, VOCAB_CASES[w])
        else:
            raise SystemExit(f'unknown case {w}: use tiny, ' + ', '.join(VOCAB_CASES))
