#!/usr/bin/env python3
"""Continue a WebGPU Fine-Tuning Studio run with PyTorch, on one device or under torchrun.

This one file needs only PyTorch (1.13 or newer) and numpy. It reads a studio checkpoint
(`checkpoint-<step>/`, format version 1: a Hugging Face GPT-2 folder plus optimizer.safetensors
and trainer_state.json, described in the studio's docs/checkpoint-format.md) and performs the
run's remaining optimizer steps exactly as the studio would:

  - GPT-2 as Hugging Face's GPT2LMHeadModel computes it (pre-LayerNorm blocks, causal attention
    scaled by 1/sqrt(head size), gelu_new, LM head tied to wte, Conv1D weights stored (in, out)),
    with Hugging Face's tensor names, so the weights load and save without renaming;
  - LoRA with PEFT's semantics (y = x W + b + dropout(x) A^T B^T * alpha/r, alpha/sqrt(r) with
    rsLoRA; only A and B train);
  - torch.optim.AdamW with the checkpoint's moments and per-tensor step counts, one parameter
    group per (depth group, decay) pair: weight decay only on tensors of two or more dimensions,
    depth group d at lr / f^(L+1-d) (discriminative rates);
  - the learning-rate schedule (Hugging Face's constant / linear / cosine with warmup, or
    ULMFiT's slanted triangular) evaluated at the 0-based optimizer step, clip_grad_norm_ over
    all trainable gradients (the logged grad_norm is the norm before clipping), gradual
    unfreezing, gradient accumulation;
  - the studio's window order: row j of the run reads window j mod W, or, shuffled, window
    perm(seed, epoch)[j mod W] with the studio's seeded Fisher-Yates permutation (xoshiro128**
    seeded through murmur3's fmix32), re-implemented here bit for bit.

Under torchrun the rows of every micro-batch are split across the processes (the batch must
divide by the number of processes); gradients are summed across processes with one all-reduce
per optimizer step, so every process holds the gradient of the whole batch and takes the same
AdamW step. The logged loss and grad_norm are those of the whole batch. Only rank 0 writes.
Backends: NCCL on GPUs, gloo on CPUs.

With dropout 0 the continuation reproduces the studio's losses step for step (to float32
rounding). With dropout > 0 PyTorch's own masks are used, so the curve agrees in distribution,
not bit for bit.

Usage (see the project's README.md):
  python train.py --checkpoint checkpoint --steps 1000 --out runs/continued
  torchrun --standalone --nproc_per_node 8 train.py --checkpoint checkpoint --steps 1000 --out runs/c
"""
import argparse
import hashlib
import json
import math
import os
import random
import shutil
import string
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CHECKPOINT_FORMAT = 'webgpu-finetuning-studio/checkpoint'
CHECKPOINT_FORMAT_VERSION = 1
HF_PREFIX = 'transformer.'
ADAPTER_PREFIX = 'base_model.model.'
# Files of a model folder copied unchanged into every checkpoint and the final folder.
COPIED_FILES = ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt',
                'special_tokens_map.json']
LORA_MODULES = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']
M32 = 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Errors: every bad input is refused before the first step, with what was wrong and what to do.

class StudioError(Exception):
    """A problem with the input or the settings; the message says what to do."""


class CheckpointFormatError(StudioError):
    """Not a studio checkpoint, or one of a format version this file does not read."""


class CorruptCheckpointError(StudioError):
    """A checkpoint file that cannot be read as what it claims to be."""


class DataFileError(StudioError):
    """A training data file that is missing, unreadable, or not the data the run trained on."""


class BatchSplitError(StudioError):
    """The batch cannot be split evenly across the processes."""


class SettingsError(StudioError):
    """A setting this trainer cannot reproduce, or a bad command-line value."""


class OutputExistsError(StudioError):
    """An output path already exists; nothing is ever written over."""


# ---------------------------------------------------------------------------------------------
# safetensors: an 8-byte little-endian header length, a JSON header (padded with spaces to a
# multiple of 8), then the tensors' raw little-endian bytes, packed with no holes.

_NP_DTYPES = {'F32': np.float32, 'F16': np.float16, 'F64': np.float64, 'I64': np.int64, 'I32': np.int32,
              'U8': np.uint8, 'I8': np.int8, 'I16': np.int16, 'U16': np.uint16, 'BF16': np.uint16}
_ST_DTYPES = {torch.float32: 'F32', torch.float16: 'F16', torch.float64: 'F64', torch.int64: 'I64',
              torch.int32: 'I32'}


def read_safetensors(path):
    """{name: tensor} of a safetensors file (BF16 is returned as torch.bfloat16)."""
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except OSError as e:
        raise CorruptCheckpointError('Cannot read %s: %s.' % (path, e.strerror or e))
    if len(raw) < 8:
        raise CorruptCheckpointError('%s is %d bytes, too short for a safetensors file; copy it again.' % (path, len(raw)))
    (n,) = struct.unpack('<Q', raw[:8])
    if n > len(raw) - 8:
        raise CorruptCheckpointError('%s: the safetensors header claims %d bytes but the file has %d; it is truncated, copy it again.'
                                     % (path, n, len(raw)))
    try:
        header = json.loads(raw[8:8 + n].decode('utf-8'))
    except (UnicodeDecodeError, ValueError):
        raise CorruptCheckpointError('%s: the safetensors header is not JSON; the file is damaged.' % path)
    header.pop('__metadata__', None)
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, e in header.items():
        dt = e.get('dtype')
        if dt not in _NP_DTYPES:
            raise CorruptCheckpointError('%s: tensor %s has dtype %s, which this reader does not know.' % (path, name, dt))
        b, end = e['data_offsets']
        shape = [int(s) for s in e['shape']]
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= b <= end <= len(data)) or end - b != count * np.dtype(_NP_DTYPES[dt]).itemsize:
            raise CorruptCheckpointError('%s: tensor %s does not fit the file (offsets %d..%d); the file is damaged.' % (path, name, b, end))
        arr = np.frombuffer(data[b:end], dtype=np.dtype(_NP_DTYPES[dt]).newbyteorder('<')).reshape(shape).copy()
        t = torch.from_numpy(arr)
        if dt == 'BF16':
            t = t.view(torch.int16).view(torch.bfloat16)
        out[name] = t
    return out


def write_safetensors(path, tensors):
    """Writes [(name, tensor)] in the given order, with {"format": "pt"} metadata (transformers needs it)."""
    header = {'__metadata__': {'format': 'pt'}}
    blobs = []
    offset = 0
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        if t.dtype not in _ST_DTYPES:
            raise SettingsError('cannot write tensor %s of dtype %s' % (name, t.dtype))
        b = t.numpy().astype(t.numpy().dtype.newbyteorder('<')).tobytes()
        header[name] = {'dtype': _ST_DTYPES[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(',', ':')).encode('utf-8')
    h += b' ' * ((-len(h)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())


def write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2)
        f.write('\n')


# ---------------------------------------------------------------------------------------------
# The studio's seeded generator and window permutation (its src/engine/generate/sampling.ts
# SeededRng and src/engine/train/data.ts epochPermutation), bit for bit: xoshiro128** (Blackman &
# Vigna 2018) seeded from (seed, stream) through a Weyl sequence and murmur3's fmix32.

def _fmix32(h):
    h &= M32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def _rotl(v, k):
    return ((v << k) | (v >> (32 - k))) & M32


class SeededRng:
    def __init__(self, seed, stream=0):
        if seed < 0 or stream < 0:
            raise SettingsError('seed %d and stream %d must be whole numbers >= 0' % (seed, stream))
        x = _fmix32((seed & M32) ^ _fmix32((seed >> 32) + 0x632BE5AB))
        x = _fmix32(x ^ _fmix32((stream & M32) + 0x9E3779B9) ^ _fmix32((stream >> 32) + 0x7F4A7C15))
        s = []
        for _ in range(4):
            x = (x + 0x9E3779B9) & M32  # golden-ratio Weyl increment
            s.append(_fmix32(x))
        if not (s[0] | s[1] | s[2] | s[3]):
            s[0] = 1  # the one forbidden state
        self.s = s

    def next_uint32(self):
        s0, s1, s2, s3 = self.s
        result = (_rotl((s1 * 5) & M32, 7) * 9) & M32
        t = (s1 << 9) & M32
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 11)
        self.s = [s0, s1, s2, s3]
        return result

    def next_int(self, n):
        """Uniform in [0, n) without modulo bias (rejects the top partial block)."""
        limit = 2 ** 32 - (2 ** 32 % n)
        x = self.next_uint32()
        while x >= limit:
            x = self.next_uint32()
        return x % n


def epoch_permutation(W, seed, epoch):
    """The studio's shuffled window order of one epoch: Fisher-Yates from the top with SeededRng(seed, epoch)."""
    perm = list(range(W))
    rng = SeededRng(seed, epoch)
    for i in range(W - 1, 0, -1):
        j = rng.next_int(i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return np.array(perm, dtype=np.int64)


class WindowOrder:
    """Row j (counted over every micro-batch row since the start of training) reads window_at(j)."""

    def __init__(self, W, shuffled, seed):
        self.W, self.shuffled, self.seed = W, shuffled, seed
        self._epoch, self._perm = -1, None

    def window_at(self, j):
        e, i = divmod(j, self.W)
        if not self.shuffled:
            return i
        if e != self._epoch:
            self._perm, self._epoch = epoch_permutation(self.W, self.seed, e), e
        return int(self._perm[i])


# ---------------------------------------------------------------------------------------------
# Schedules (the studio's src/engine/train/schedule.ts, after Hugging Face's optimization.py and
# ULMFiT's slanted triangular rates): the multiplier at the 0-based optimizer step.

def warmup_steps(s, total):
    w = s.get('warmup', 0)
    if w >= 1 or w == 0:
        return w
    return math.ceil(w * total)  # a fraction of the run, rounded up as HF's get_warmup_steps


def lr_multiplier(s, step0, total):
    t = min(step0, total)  # past the end the final value holds
    kind = s['kind']
    if kind in ('slanted', 'stlr'):
        cut_frac, ratio = s.get('cut_frac', 0.1), s.get('ratio', 32)
        cut = math.floor(total * cut_frac)
        if t < cut:
            p = t / cut
        else:
            decay_len = total if cut == 0 else cut * (1 / cut_frac - 1)
            p = max(0, 1 - (t - cut) / decay_len) if decay_len > 0 else 1
        return (1 + p * (ratio - 1)) / ratio
    warm = warmup_steps(s, total)
    if t < warm:
        return t / max(1, warm)
    if kind == 'constant':
        return 1
    progress = min(1, (t - warm) / max(1, total - warm))
    if kind == 'linear':
        decayed = max(0, 1 - progress)
    elif kind == 'cosine':
        decayed = max(0, 0.5 * (1 + math.cos(math.pi * progress)))
    else:
        raise SettingsError("schedule kind '%s' is not one of constant, linear, cosine, slanted." % kind)
    m = s.get('min_lr_ratio', 0)
    return m + (1 - m) * decayed


# ---------------------------------------------------------------------------------------------
# Depth groups (the studio's src/engine/train/groups.ts): embeddings 0, block i at i + 1, ln_f at
# L + 1 (the top). Discriminative rates: group d at lr / f^(L+1-d). Gradual unfreezing: the k top
# groups open at step 0, the group at rank r from the top (r >= k) at step (r - k + 1) * N; a
# group the user froze keeps its turn but never opens.

def group_lr_factors(L, f):
    return [1 / f ** (L + 1 - d) for d in range(L + 2)]


def open_steps(L, unfreeze, user_frozen):
    """(L + 2) opening step of each group; None: never."""
    out = []
    for d in range(L + 2):
        if d in user_frozen:
            out.append(None)
        elif unfreeze is None:
            out.append(0)
        else:
            rank = L + 1 - d
            out.append(0 if rank < unfreeze['start'] else (rank - unfreeze['start'] + 1) * unfreeze['every'])
    return out


def depth_group(name, L):
    """Depth group of a parameter by its HF name (without the transformer. prefix)."""
    if name.startswith(('wte.', 'wpe.')):
        return 0
    if name.startswith('h.'):
        return int(name.split('.')[1]) + 1
    if name.startswith('ln_f.'):
        return L + 1
    raise SettingsError('parameter %s belongs to no depth group' % name)


# ---------------------------------------------------------------------------------------------
# GPT-2 with Hugging Face's names (transformers' modeling_gpt2.py semantics).

def gelu_new(x):
    # HF NewGELUActivation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Conv1D(nn.Module):
    """transformers' Conv1D: weight (in, out), y = x W + b; optionally a PEFT LoRA adapter."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.lora_A = None
        self.lora_B = None

    def add_lora(self, r, scaling, dropout):
        # PEFT lora.Linear: lora_A = Linear(in, r) with weight (r, in), lora_B = Linear(r, out), weight (out, r).
        self.lora_A = nn.Linear(self.weight.shape[0], r, bias=False)
        self.lora_B = nn.Linear(r, self.weight.shape[1], bias=False)
        self.lora_drop = nn.Dropout(dropout)
        self.scaling = scaling

    def forward(self, x):
        y = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], self.weight.shape[1])
        if self.lora_A is not None:
            y = y + self.lora_B(self.lora_A(self.lora_drop(x))) * self.scaling
        return y


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg['n_embd']
        self.n_head = cfg['n_head']
        self.c_attn = Conv1D(C, 3 * C)
        self.c_proj = Conv1D(C, C)
        self.attn_dropout = nn.Dropout(cfg['attn_pdrop'])
        self.resid_dropout = nn.Dropout(cfg['resid_pdrop'])

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # q, k, v: three consecutive C-wide blocks
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        p = self.attn_dropout.p if self.training else 0.0
        if hasattr(F, 'scaled_dot_product_attention'):
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:  # PyTorch 1.13
            att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(k.shape[-1]))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = self.attn_dropout(att.masked_fill(~mask, float('-inf')).softmax(dim=-1))
            y = att @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg['n_embd']
        inner = cfg.get('n_inner') or 4 * C
        self.c_fc = Conv1D(C, inner)
        self.c_proj = Conv1D(inner, C)
        self.dropout = nn.Dropout(cfg['resid_pdrop'])

    def forward(self, x):
        return self.dropout(self.c_proj(gelu_new(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, eps = cfg['n_embd'], cfg['layer_norm_epsilon']
        self.ln_1 = nn.LayerNorm(C, eps=eps)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(C, eps=eps)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """GPT2LMHeadModel: parameter names are exactly HF's (transformer.wte.weight, ...); the head is wte."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg['vocab_size'], cfg['n_embd']),
            wpe=nn.Embedding(cfg['n_positions'], cfg['n_embd']),
            drop=nn.Dropout(cfg['embd_pdrop']),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg['n_layer'])]),
            ln_f=nn.LayerNorm(cfg['n_embd'], eps=cfg['layer_norm_epsilon']),
        ))

    def forward(self, idx):
        tr = self.transformer
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = tr.drop(tr.wte(idx) + tr.wpe(pos))
        for block in tr.h:
            x = block(x)
        return tr.ln_f(x) @ tr.wte.weight.T  # (B, T, V), the tied LM head

    def lora_modules(self):
        """[(name without prefix, Conv1D)] of every LoRA-wrapped layer, block order then LORA_MODULES order."""
        out = []
        for i, block in enumerate(self.transformer.h):
            for m in LORA_MODULES:
                mod = block.get_submodule(m)
                if mod.lora_A is not None:
                    out.append(('h.%d.%s' % (i, m), mod))
        return out


def check_config(cfg):
    act = cfg.get('activation_function', 'gelu_new')
    if act != 'gelu_new':
        raise SettingsError("config.json: activation_function '%s' is not reproduced here (GPT-2 uses gelu_new)." % act)
    for k in ('scale_attn_by_inverse_layer_idx', 'reorder_and_upcast_attn'):
        if cfg.get(k):
            raise SettingsError('config.json: %s is set; this trainer does not reproduce it.' % k)
    if cfg.get('scale_attn_weights') is False:
        raise SettingsError('config.json: scale_attn_weights false is not reproduced here.')
    cfg.setdefault('layer_norm_epsilon', 1e-5)


def lora_targets(cfg, targets):
    """[(layer, module)] PEFT would adapt: the module name equals a target or ends with '.' + target."""
    out = []
    for i in range(cfg['n_layer']):
        for m in LORA_MODULES:
            key = 'transformer.h.%d.%s' % (i, m)
            if any(key == t or key.endswith('.' + t) for t in targets):
                out.append((i, m))
    return out


# ---------------------------------------------------------------------------------------------
# Token files: nanoGPT's raw little-endian uint16, or llm.c's (256 int32 header: magic 20240520,
# version 1, count; then uint16 ids).

LLMC_MAGIC = 20240520


def read_token_file(path):
    if not os.path.isfile(path):
        raise DataFileError('The training data file %s does not exist. The checkpoint names it in trainer_state.json '
                            '(data.train); put the file there, or edit that path to where it is now.' % path)
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(12)
    if size >= 1024 and struct.unpack('<i', head[:4])[0] == LLMC_MAGIC:
        version, count = struct.unpack('<ii', head[4:12])
        if version != 1:
            raise DataFileError('%s: llm.c token file version %d; only version 1 is read.' % (path, version))
        if size != 1024 + 2 * count:
            raise DataFileError('%s: the llm.c header says %d tokens but the file has %d bytes; copy it again.' % (path, count, size))
        return np.memmap(path, dtype='<u2', mode='r', offset=1024, shape=(count,))
    if size % 2:
        raise DataFileError('%s: %d bytes is not whole uint16 token ids; the file is truncated, copy it again.' % (path, size))
    if size == 0:
        raise DataFileError('%s is empty.' % path)
    return np.memmap(path, dtype='<u2', mode='r')


def tokens_fingerprint(tokens):
    """SHA-256 of the ids as little-endian uint32, in stream order (the checkpoint's train_tokens)."""
    h = hashlib.sha256()
    step = 1 << 22
    for i in range(0, len(tokens), step):
        h.update(np.asarray(tokens[i:i + step]).astype('<u4').tobytes())
    return 'sha256:' + h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The checkpoint.

def load_checkpoint(path):
    """Reads and checks a studio checkpoint folder; returns a dict of its parts (tensors on the CPU)."""
    path = os.path.abspath(path)
    state_path = os.path.join(path, 'trainer_state.json')
    if not os.path.isdir(path):
        raise CheckpointFormatError('%s is not a folder. Give --checkpoint the checkpoint-<step> folder the studio wrote.' % path)
    if not os.path.isfile(state_path):
        raise CheckpointFormatError('%s has no trainer_state.json, so it is not a studio checkpoint (a plain model folder '
                                    'cannot be continued). Give --checkpoint a checkpoint-<step> folder.' % path)
    try:
        with open(state_path) as f:
            state = json.load(f)
    except ValueError as e:
        raise CorruptCheckpointError('%s is not valid JSON (%s); the checkpoint is damaged.' % (state_path, e))
    if state.get('format') != CHECKPOINT_FORMAT:
        raise CheckpointFormatError("%s: format is %r, not '%s'." % (state_path, state.get('format'), CHECKPOINT_FORMAT))
    if state.get('format_version') != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointFormatError(
            '%s: checkpoint format version %r; this train.py reads version %d. Export the project again from the studio '
            'version that wrote the checkpoint.' % (state_path, state.get('format_version'), CHECKPOINT_FORMAT_VERSION))
    for k in ('step', 'rows_read', 'windows', 'settings', 'data', 'fingerprints'):
        if k not in state:
            raise CorruptCheckpointError('%s has no "%s"; the checkpoint is incomplete.' % (state_path, k))
    with open(os.path.join(path, 'config.json')) as f:
        config = json.load(f)
    check_config(config)
    weights = {}
    for k, t in read_safetensors(os.path.join(path, 'model.safetensors')).items():
        name = k[len(HF_PREFIX):] if k.startswith(HF_PREFIX) else k
        if name == 'lm_head.weight' or (name.startswith('h.') and name.split('.')[-1] in ('bias', 'masked_bias')
                                         and name.split('.')[-2] == 'attn'):
            continue  # the tied head and the causal-mask buffers
        weights[name] = t.float()
    ck = dict(path=path, state=state, config=config, weights=weights, adapter=None, adapter_config=None)
    if state['settings'].get('lora'):
        ap = os.path.join(path, 'adapter_model.safetensors')
        if not os.path.isfile(ap):
            raise CorruptCheckpointError('%s: the run uses LoRA but the checkpoint has no adapter_model.safetensors.' % path)
        ck['adapter'] = {k[len(ADAPTER_PREFIX + HF_PREFIX):]: t.float() for k, t in read_safetensors(ap).items()}
        with open(os.path.join(path, 'adapter_config.json')) as f:
            ck['adapter_config'] = json.load(f)
    op = os.path.join(path, 'optimizer.safetensors')
    ck['optimizer'] = read_safetensors(op) if os.path.isfile(op) else {}
    return ck


def resolve_data(ck, which='train'):
    """Absolute paths of the training (or held-out) data; a relative path is relative to the checkpoint folder."""
    paths = ck['state']['data'].get(which) or []
    if not paths:
        raise CorruptCheckpointError('trainer_state.json names no training data (data.%s is empty).' % which)
    return [p if os.path.isabs(p) else os.path.normpath(os.path.join(ck['path'], p)) for p in paths]


def load_tokens(paths):
    parts = [read_token_file(p) for p in paths]
    return parts[0] if len(parts) == 1 else np.concatenate([np.asarray(p) for p in parts])


# ---------------------------------------------------------------------------------------------
# Training.

def parse_args(argv):
    p = argparse.ArgumentParser(description='Continue a WebGPU Fine-Tuning Studio run with PyTorch (torchrun for several processes).')
    p.add_argument('--checkpoint', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'checkpoint'),
                   help='the studio checkpoint folder (default: checkpoint/ beside this file)')
    p.add_argument('--steps', type=int, default=None, help="the run's total optimizer steps (default: the checkpoint's)")
    p.add_argument('--out', required=True, help='output folder: checkpoint-<step>/ folders and, at the end, the Hugging Face model')
    p.add_argument('--log', default=None, help='JSON lines, one per step {"step","loss","lr","grad_norm"}, appended (default <out>/log.jsonl)')
    p.add_argument('--save-every', type=int, default=0, help='also write a checkpoint every N optimizer steps (one is always written at the last step)')
    p.add_argument('--device', default=None, help='cpu, cuda or cuda:N (default: cuda when available; under torchrun cuda:LOCAL_RANK)')
    p.add_argument('--bf16', action='store_true', help="bfloat16 autocast on GPUs (off by default: then the run continues the studio's float32 numbers)")
    return p.parse_args(argv)


def now_iso():
    t = time.time()
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t)) + '.%03dZ' % int((t % 1) * 1000)


class Run:
    def __init__(self, args):
        self.args = args
        self.world = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        self.local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        self.main = self.rank == 0

    def say(self, msg):
        if self.main:
            print(msg, flush=True)

    # -- everything that can be refused is checked here, before any step ---------------------
    def prepare(self):
        a = self.args
        ck = load_checkpoint(a.checkpoint)
        self.ck = ck
        st, s = ck['state'], ck['state']['settings']
        self.settings = s
        self.start = int(st['step'])
        self.total = int(a.steps if a.steps is not None else st.get('total_steps', s['steps']))
        if self.total <= self.start:
            raise SettingsError('--steps %d: the checkpoint has already done %d steps. --steps is the run\'s total; give more than %d.'
                                % (self.total, self.start, self.start))
        if a.save_every < 0:
            raise SettingsError('--save-every must be >= 0 (0: only the last step).')
        self.B, self.T, self.M = int(s['batch']), int(s['seq']), int(s.get('grad_accum', 1))
        if self.B % self.world:
            raise BatchSplitError('The batch of %d rows does not split across %d processes: each process takes batch / processes rows. '
                                  'Run with a number of processes that divides %d (e.g. --nproc_per_node %d).'
                                  % (self.B, self.world, self.B, max(d for d in range(1, self.world + 1) if self.B % d == 0)))
        if s.get('order', 'sequential') not in ('sequential', 'shuffled'):
            raise SettingsError("settings.order '%s' is neither sequential nor shuffled." % s.get('order'))
        lr_multiplier(s['schedule'], 0, self.total)  # refuses an unknown schedule now
        paths = resolve_data(ck)
        self.data_paths = paths
        self.tokens = load_tokens(paths)
        W = (len(self.tokens) - 1) // self.T
        if W < 1:
            raise DataFileError('The training data has %d tokens, fewer than one window of %d.' % (len(self.tokens), self.T + 1))
        if W != int(st['windows']):
            raise DataFileError('The training data (%s) makes %d windows of %d tokens, the checkpoint was trained on %d: it is not the same data.'
                                % (', '.join(paths), W, self.T, st['windows']))
        want = ck['state']['fingerprints'].get('train_tokens')
        if want:
            got = tokens_fingerprint(self.tokens)
            if got != want:
                raise DataFileError('The training data (%s) is not the data the run trained on: its fingerprint is %s, the checkpoint '
                                    'expects %s. Restore the original token file.' % (', '.join(paths), got, want))
        vmax = int(np.max(self.tokens)) if len(self.tokens) else 0
        if vmax >= ck['config']['vocab_size']:
            raise DataFileError('The training data holds token id %d, beyond the vocabulary of %d.' % (vmax, ck['config']['vocab_size']))
        self.order = WindowOrder(W, s.get('order') == 'shuffled', int(s.get('seed', 0)))
        # Held-out data: evaluated every settings.eval_every steps and after the last one, as the studio does.
        self.eval_paths = resolve_data(ck, 'eval') if ck['state']['data'].get('eval') else []
        self.eval_tokens = None
        if self.eval_paths:
            self.eval_tokens = load_tokens(self.eval_paths)
            want = ck['state']['fingerprints'].get('eval_tokens')
            if want and tokens_fingerprint(self.eval_tokens) != want:
                raise DataFileError('The held-out data (%s) is not the data the run evaluated on (its fingerprint differs). '
                                    'Restore the original token file.' % ', '.join(self.eval_paths))
            if (len(self.eval_tokens) - 1) // self.T < 1:
                raise DataFileError('The held-out data has %d tokens, fewer than one window of %d.' % (len(self.eval_tokens), self.T + 1))
        self.out = os.path.abspath(a.out)
        if self.out == ck['path']:
            raise OutputExistsError('--out %s is the checkpoint folder itself; choose another folder.' % self.out)
        self.save_steps = sorted({t for t in range(self.start + 1, self.total + 1) if a.save_every and t % a.save_every == 0} | {self.total})
        for t in self.save_steps:
            d = os.path.join(self.out, 'checkpoint-%d' % t)
            if os.path.exists(d):
                raise OutputExistsError('%s already exists; nothing is written over. Choose another --out or move it away.' % d)
        for n in ('model.safetensors', 'config.json'):
            if os.path.exists(os.path.join(self.out, n)):
                raise OutputExistsError('%s already exists; nothing is written over. Choose another --out or move it away.'
                                        % os.path.join(self.out, n))
        self.log_path = os.path.abspath(a.log) if a.log else os.path.join(self.out, 'log.jsonl')
        if a.bf16 and not (a.device or 'cuda').startswith('cuda'):
            raise SettingsError('--bf16 is for GPUs (autocast to bfloat16 on CUDA); leave it off on the CPU.')
        if a.bf16 and not torch.cuda.is_available():
            raise SettingsError('--bf16 needs a CUDA GPU, and PyTorch sees none.')

    # -- model, optimizer ----------------------------------------------------------------------
    def build(self):
        ck, s, cfg = self.ck, self.settings, dict(self.ck['config'])
        d = s.get('dropout') or {}
        cfg['embd_pdrop'] = d.get('embd', cfg.get('embd_pdrop', 0.1))
        cfg['attn_pdrop'] = d.get('attn', cfg.get('attn_pdrop', 0.1))
        cfg['resid_pdrop'] = d.get('resid', cfg.get('resid_pdrop', 0.1))
        self.L = cfg['n_layer']
        if self.args.device:
            dev = self.args.device
            if dev == 'cuda' and self.world > 1:
                dev = 'cuda:%d' % self.local_rank
        else:
            dev = 'cuda:%d' % self.local_rank if torch.cuda.is_available() else 'cpu'
        self.device = torch.device(dev)
        if self.device.type == 'cuda':
            torch.cuda.set_device(self.device)
        model = GPT2(cfg)
        missing = []
        for name, p in model.named_parameters():
            key = name[len(HF_PREFIX):]
            if key in ck['weights']:
                w = ck['weights'][key]
                if tuple(w.shape) != tuple(p.shape):
                    raise CorruptCheckpointError('model.safetensors: %s has shape %s, the config needs %s.' % (key, list(w.shape), list(p.shape)))
                p.data.copy_(w)
            elif '.lora_' not in key:
                missing.append(key)
        if missing:
            raise CorruptCheckpointError('model.safetensors lacks %s; the checkpoint is incomplete.' % ', '.join(missing[:5]))
        self.lora = s.get('lora')
        if self.lora:
            lc = self.lora
            scaling = lc['alpha'] / math.sqrt(lc['r']) if lc.get('rslora') else lc['alpha'] / lc['r']
            for i, m in lora_targets(cfg, lc['targets']):
                mod = model.transformer.h[i].get_submodule(m)
                mod.add_lora(lc['r'], scaling, lc.get('dropout', 0.0))
                for ab in ('lora_A', 'lora_B'):
                    key = 'h.%d.%s.%s.weight' % (i, m, ab)
                    if key not in ck['adapter']:
                        raise CorruptCheckpointError('adapter_model.safetensors lacks %s%s%s.' % (ADAPTER_PREFIX, HF_PREFIX, key))
                    getattr(mod, ab).weight.data.copy_(ck['adapter'][key])
        model.to(self.device)
        self.model = model
        # Trainable tensors by depth group: with LoRA only the LoRA factors (by their block), else every parameter.
        self.tensors = []  # (file name, param, depth group)
        for name, p in model.named_parameters():
            key = name[len(HF_PREFIX):]
            is_adapter = '.lora_' in key
            p.requires_grad_(False)
            if bool(self.lora) != is_adapter:
                continue
            fname = ADAPTER_PREFIX + name if is_adapter else name
            self.tensors.append((fname, p, depth_group(key, self.L)))
        self.factors = group_lr_factors(self.L, float(s.get('lr_decay', 1)))
        wd = float(s.get('weight_decay', 0))
        groups = {}
        for fname, p, g in self.tensors:
            decay = p.dim() >= 2  # biases and LayerNorm parameters are not decayed
            groups.setdefault((g, decay), []).append(p)
        self.param_groups = [dict(params=ps, weight_decay=wd if decay else 0.0, depth=g) for (g, decay), ps in sorted(groups.items())]
        self.opt = torch.optim.AdamW(self.param_groups, lr=float(s['lr']), betas=(float(s.get('beta1', 0.9)), float(s.get('beta2', 0.999))),
                                     eps=float(s.get('eps', 1e-8)), weight_decay=wd, foreach=False)
        # AdamW state from the checkpoint; a tensor with no entry starts fresh (step 0).
        opt_t = self.ck['optimizer']
        known = {fname for fname, _, _ in self.tensors}
        for k in opt_t:
            base = k.rsplit('.', 1)[0]
            if base not in known:
                raise CorruptCheckpointError('optimizer.safetensors has state for %s, which is not a trainable tensor of this run.' % base)
        for fname, p, g in self.tensors:
            if fname + '.exp_avg' in opt_t:
                self.opt.state[p] = {
                    'step': torch.tensor(float(opt_t[fname + '.step'].item())),
                    'exp_avg': opt_t[fname + '.exp_avg'].to(self.device, torch.float32).reshape(p.shape).clone(),
                    'exp_avg_sq': opt_t[fname + '.exp_avg_sq'].to(self.device, torch.float32).reshape(p.shape).clone(),
                }
        self.opens = open_steps(self.L, s.get('unfreeze'), set(s.get('frozen') or []))

    def set_trainable(self, step0):
        """The tensors training at 0-based step step0; frozen ones lose gradient and state."""
        out = []
        for fname, p, g in self.tensors:
            on = self.opens[g] is not None and self.opens[g] <= step0
            p.requires_grad_(on)
            if on:
                out.append(p)
            else:
                p.grad = None
                self.opt.state.pop(p, None)
        return out

    # -- one optimizer step --------------------------------------------------------------------
    def batch_rows(self, rows_read, m):
        """The rows of micro-batch m that this process reads: inputs and targets (Bp, T)."""
        Bp = self.B // self.world
        first = rows_read + m * self.B + self.rank * Bp
        T, tok = self.T, self.tokens
        rows = [np.asarray(tok[w * T:w * T + T + 1]) for w in (self.order.window_at(first + b) for b in range(Bp))]
        x = torch.from_numpy(np.stack(rows).astype(np.int64)).to(self.device)
        return x[:, :-1], x[:, 1:]

    def step(self, step0, rows_read):
        trainable = self.set_trainable(step0)
        mult = lr_multiplier(self.settings['schedule'], step0, self.total)
        lr = float(self.settings['lr'])
        for grp in self.opt.param_groups:
            grp['lr'] = lr * mult * self.factors[grp['depth']]
        for p in trainable:
            p.grad = None
        # Dropout masks: PyTorch's own, seeded by (seed, step, rank) so a rerun repeats them.
        torch.manual_seed((int(self.settings.get('seed', 0)) * 1000003 + step0 * 1009 + self.rank) % (2 ** 63))
        self.model.train()
        denom = self.B * self.T * self.M  # every target of the whole step, across processes
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for m in range(self.M):
            x, y = self.batch_rows(rows_read, m)
            if self.args.bf16:
                with torch.autocast(device_type='cuda', dtype=torch.bfloat16):
                    logits = self.model(x)
            else:
                logits = self.model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction='sum')
            loss_sum += loss.detach().double()
            if trainable:
                (loss / denom).backward()
        for p in trainable:
            if p.grad is None:  # a trainable tensor the forward did not reach still takes part (zero gradient), as in the studio
                p.grad = torch.zeros_like(p)
        if self.world > 1:
            import torch.distributed as dist
            # One all-reduce of every gradient (summed: each process's loss is already divided by the
            # whole step's target count) and of the loss, as DDP's bucketed all-reduce does.
            grads = [p.grad for p in trainable]
            if grads:
                flat = torch.cat([g.reshape(-1) for g in grads])
                dist.all_reduce(flat)
                o = 0
                for g in grads:
                    g.copy_(flat[o:o + g.numel()].view_as(g))
                    o += g.numel()
            dist.all_reduce(loss_sum)
        loss_v = loss_sum.item() / denom
        if trainable:
            clip = float(self.settings.get('grad_clip', 0))
            norm = torch.nn.utils.clip_grad_norm_(trainable, clip if clip > 0 else float('inf')).item()
            self.opt.step()
        else:
            norm = 0.0
        return {'step': step0 + 1, 'loss': loss_v, 'lr': lr * mult * self.factors[self.L + 1], 'grad_norm': norm}

    @torch.no_grad()
    def evaluate(self, step):
        """Every window of the held-out data, dropout off: mean loss, perplexity, top-1 accuracy (the studio's evaluator)."""
        T, tok = self.T, self.eval_tokens
        W = (len(tok) - 1) // T
        Bp = max(1, self.B // self.world)
        mine = list(range(self.rank, W, self.world))  # windows split across the processes
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        self.model.eval()
        for i in range(0, len(mine), Bp):
            rows = [np.asarray(tok[w * T:w * T + T + 1]) for w in mine[i:i + Bp]]
            x = torch.from_numpy(np.stack(rows).astype(np.int64)).to(self.device)
            logits = self.model(x[:, :-1]).float()
            y = x[:, 1:]
            loss_sum += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction='sum').double()
            correct += (logits.argmax(-1) == y).sum().double()
        if self.world > 1:
            import torch.distributed as dist
            dist.all_reduce(loss_sum)
            dist.all_reduce(correct)
        n = W * T
        loss = loss_sum.item() / n
        return {'step': step, 'eval_loss': loss, 'eval_ppl': math.exp(loss), 'eval_acc': correct.item() / n}

    # -- output ----------------------------------------------------------------------------------
    def hf_weights(self, merged):
        """[(transformer. name, tensor)] of the model; LoRA merged into W when `merged` (W + (B A)^T s)."""
        out = []
        lora = {n: mod for n, mod in self.model.lora_modules()} if merged else {}
        for name, p in self.model.named_parameters():
            if '.lora_' in name:
                continue
            t = p.detach().float().cpu()
            mod = lora.get(name[len(HF_PREFIX):-len('.weight')]) if name.endswith('.weight') else None
            if mod is not None:
                t = t + (mod.lora_B.weight.detach().cpu() @ mod.lora_A.weight.detach().cpu()).T * mod.scaling
            out.append((name, t))
        return out

    def write_model_files(self, d, merged):
        write_json(os.path.join(d, 'config.json'), self.ck['config_raw'])
        write_safetensors(os.path.join(d, 'model.safetensors'), self.hf_weights(merged))
        for n in COPIED_FILES:
            src = os.path.join(self.ck['path'], n)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(d, n))

    def write_adapter(self, d):
        write_json(os.path.join(d, 'adapter_config.json'), self.ck['adapter_config'])
        tensors = []
        for name, mod in self.model.lora_modules():
            for ab in ('lora_A', 'lora_B'):
                tensors.append((ADAPTER_PREFIX + HF_PREFIX + name + '.' + ab + '.weight', getattr(mod, ab).weight.detach().float().cpu()))
        write_safetensors(os.path.join(d, 'adapter_model.safetensors'), tensors)

    def atomic_dir(self, final, fill):
        """Writes a folder beside its final place and renames it there: it exists whole or not at all."""
        parent = os.path.dirname(final)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, '.%s.tmp-%s' % (os.path.basename(final), ''.join(random.choice(string.ascii_lowercase) for _ in range(8))))
        os.makedirs(tmp)
        try:
            fill(tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def save_checkpoint(self, step, rows_read, logs):
        st = self.ck['state']
        opt = []
        for fname, p, g in self.tensors:
            s = self.opt.state.get(p)
            if s and 'exp_avg' in s:
                opt.append((fname + '.exp_avg', s['exp_avg'].float()))
                opt.append((fname + '.exp_avg_sq', s['exp_avg_sq'].float()))
                opt.append((fname + '.step', torch.tensor(int(float(s['step'])), dtype=torch.int64)))
        opt.sort(key=lambda e: e[0])
        settings = dict(self.settings, steps=self.total)
        state = dict(st)
        state.update({
            'format': CHECKPOINT_FORMAT, 'format_version': CHECKPOINT_FORMAT_VERSION,
            'step': step, 'total_steps': self.total, 'rows_read': rows_read, 'windows': self.order.W,
            'dropout_step': step, 'settings': settings,
            'data': dict(st['data'], train=self.data_paths, eval=self.eval_paths),  # both lists always present
            'fingerprints': st['fingerprints'],
            'kernels': {'torch': torch.__version__, 'device': self.device.type, 'processes': self.world,
                        'precision': 'bf16-autocast' if self.args.bf16 else 'f32'},
            'log_history': list(st.get('log_history', [])) + logs,
            'created': now_iso(), 'writer': 'torch',
        })

        def fill(d):
            self.write_model_files(d, merged=False)  # with LoRA: the base weights, unchanged
            if self.lora:
                self.write_adapter(d)
            write_safetensors(os.path.join(d, 'optimizer.safetensors'), opt)
            write_json(os.path.join(d, 'trainer_state.json'), state)
        self.atomic_dir(os.path.join(self.out, 'checkpoint-%d' % step), fill)
        self.say('saved %s' % os.path.join(self.out, 'checkpoint-%d' % step))

    def write_final(self):
        """The Hugging Face folder at <out>/ (LoRA merged into the weights; the adapter alone in <out>/adapter/)."""
        def fill(d):
            self.write_model_files(d, merged=True)
            if self.lora:
                os.makedirs(os.path.join(d, 'adapter'))
                self.write_adapter(os.path.join(d, 'adapter'))
        tmp_parent = os.path.join(self.out, '.final.tmp-%d' % os.getpid())
        self.atomic_dir(tmp_parent, fill)
        for n in sorted(os.listdir(tmp_parent)):
            dst = os.path.join(self.out, n)
            if os.path.exists(dst):
                raise OutputExistsError('%s appeared while training; the model is left in %s.' % (dst, tmp_parent))
            os.rename(os.path.join(tmp_parent, n), dst)
        os.rmdir(tmp_parent)
        self.say('saved the Hugging Face model in %s' % self.out)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self):
        with open(os.path.join(self.ck['path'], 'config.json')) as f:
            self.ck['config_raw'] = json.load(f)
        if self.main:
            os.makedirs(self.out, exist_ok=True)
            os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        s = self.settings
        self.say('continuing %s: steps %d..%d of %d, %d process(es) on %s, %d rows per step (%d per process), %s windows'
                 % (self.ck['path'], self.start + 1, self.total, self.total, self.world, self.device, self.B * self.M,
                    self.B // self.world * self.M, s.get('order', 'sequential')))
        rows = int(self.ck['state']['rows_read'])
        logs = []
        log_f = open(self.log_path, 'a') if self.main else None
        t0 = time.time()
        try:
            for step0 in range(self.start, self.total):
                rec = self.step(step0, rows)
                if not math.isfinite(rec['loss']):
                    raise StudioError('The loss became %s at step %d; lower the learning rate and continue from the last checkpoint.'
                                      % (rec['loss'], step0 + 1))
                rows += self.B * self.M
                logs.append(rec)
                if log_f:
                    log_f.write(json.dumps(rec, separators=(',', ':')) + '\n')
                    log_f.flush()
                if self.main and (rec['step'] % 10 == 0 or rec['step'] == self.start + 1 or rec['step'] == self.total):
                    tps = (rec['step'] - self.start) * self.B * self.M * self.T / max(1e-9, time.time() - t0)
                    print('step %d/%d  loss %.4f  lr %.2e  grad_norm %.4f  %.0f tok/s' % (rec['step'], self.total, rec['loss'], rec['lr'], rec['grad_norm'], tps), flush=True)
                every = int(s.get('eval_every') or 0)
                if self.eval_tokens is not None and ((every > 0 and rec['step'] % every == 0) or rec['step'] == self.total):
                    ev = self.evaluate(rec['step'])
                    logs.append(ev)
                    if log_f:
                        log_f.write(json.dumps(ev, separators=(',', ':')) + '\n')
                        log_f.flush()
                    self.say('eval after step %d: loss %.4f  ppl %.2f  accuracy %.2f%%' % (ev['step'], ev['eval_loss'], ev['eval_ppl'], 100 * ev['eval_acc']))
                if self.main and rec['step'] in self.save_steps:
                    self.save_checkpoint(rec['step'], rows, logs)
            if self.main:
                self.write_final()
        finally:
            if log_f:
                log_f.close()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    run = Run(args)
    dist_on = run.world > 1
    try:
        run.prepare()
    except StudioError as e:
        if run.main:
            print('error: %s' % e, file=sys.stderr, flush=True)
        return 2
    if dist_on:
        import torch.distributed as dist
        use_cuda = (args.device or ('cuda' if torch.cuda.is_available() else 'cpu')).startswith('cuda')
        dist.init_process_group(backend='nccl' if use_cuda else 'gloo')
    try:
        run.build()
        run.run()
    except StudioError as e:
        if run.main:
            print('error: %s' % e, file=sys.stderr, flush=True)
        return 2
    if dist_on:
        import torch.distributed as dist
        dist.barrier()  # rank 0 has written everything
        dist.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
