#!/usr/bin/env python3
"""PyTorch references for TensorBrain's runtime transformer layers.

Run from the repository root:

    pip install torch safetensors numpy
    python3 tests/parity/generate_transformer.py

Writes tests/parity/fixtures/transformer.safetensors, read by tensorbrain/tests/transformer_layers.rs.
Metadata `cases`: a JSON list of {name, layer, config...}. Tensors per case: `<name>/param/<pytorch
name>` (the module's state dict, so the Rust layer must load PyTorch's names), inputs
`<name>/in/<x|key|value|memory>`, masks `<name>/mask/<kind>` (u8; PyTorch's layer conventions:
1 = masked out / padding), `<name>/out`, `<name>/gout` and gradients of sum(out * gout):
`<name>/grad/in/<input>`, `<name>/grad/param/<name>`. Layers in train mode with dropout 0 (so
PyTorch takes its reference path, not the inference fast path), one thread, fixed seed.

Latent attention and RoPE have no PyTorch module: `mla` and `rope` below are written from the
DeepSeek-V2 paper and Hugging Face's DeepseekV2Attention (with rotate_half RoPE pairing).
"""

import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "transformer.safetensors")

tensors, cases = {}, []


def record(name, layer, config, module, inputs, masks, run):
    """Runs `run(module, inputs)`, storing params, inputs, masks, output and gradients."""
    ins = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    out = run(module, ins)
    gout = torch.randn(out.shape)
    params = dict(module.named_parameters())
    grads = torch.autograd.grad(out, list(ins.values()) + list(params.values()), gout, allow_unused=True)
    for k, v in module.state_dict().items():
        tensors[f"{name}/param/{k}"] = v.detach().clone().contiguous()
    for k, v in inputs.items():
        tensors[f"{name}/in/{k}"] = v.contiguous()
    for k, v in masks.items():
        tensors[f"{name}/mask/{k}"] = v.to(torch.uint8).contiguous()
    tensors[f"{name}/out"] = out.detach().contiguous()
    tensors[f"{name}/gout"] = gout.contiguous()
    for key, g in zip(list(ins.keys()) + [f"param/{p}" for p in params], grads):
        if g is not None:
            label = key if key.startswith("param/") else f"in/{key}"
            tensors[f"{name}/grad/{label}"] = g.contiguous()
    cases.append({"name": name, "layer": layer, **config})


def causal(n):
    return torch.ones(n, n, dtype=torch.bool).triu(1)  # True = masked out


def padding(b, s, pads):
    m = torch.zeros(b, s, dtype=torch.bool)
    for i, p in enumerate(pads):
        if p:
            m[i, s - p:] = True
    return m


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def rope(x, base=10000.0, offset=0):
    d, t = x.shape[-1], x.shape[-2]
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(offset, offset + t, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    return x * ang.cos().to(x.dtype) + rotate_half(x) * ang.sin().to(x.dtype)


class MLA(nn.Module):
    """DeepSeek-V2 multi-head latent attention (no query compression), HF parameter names."""

    def __init__(self, hidden, heads, kv_rank, nope, rope_dim, vdim):
        super().__init__()
        self.h, self.nope, self.rope_dim, self.vdim, self.kv_rank = heads, nope, rope_dim, vdim, kv_rank
        self.q_proj = nn.Linear(hidden, heads * (nope + rope_dim), bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(hidden, kv_rank + rope_dim, bias=False)
        self.kv_a_layernorm = nn.RMSNorm(kv_rank, eps=1e-6)
        self.kv_b_proj = nn.Linear(kv_rank, heads * (nope + vdim), bias=False)
        self.o_proj = nn.Linear(heads * vdim, hidden, bias=False)
        with torch.no_grad():
            self.kv_a_layernorm.weight.uniform_(0.5, 1.5)

    def forward(self, x, causal_mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, -1).transpose(1, 2)
        q_nope, q_pe = q[..., :self.nope], rope(q[..., self.nope:])
        ckv = self.kv_a_proj_with_mqa(x)
        c, k_pe = ckv[..., :self.kv_rank], rope(ckv[..., self.kv_rank:]).unsqueeze(1)
        kv = self.kv_b_proj(self.kv_a_layernorm(c)).view(b, t, self.h, -1).transpose(1, 2)
        k_nope, v = kv[..., :self.nope], kv[..., self.nope:]
        qf = torch.cat([q_nope, q_pe], -1)
        kf = torch.cat([k_nope, k_pe.expand(b, self.h, t, self.rope_dim)], -1)
        o = F.scaled_dot_product_attention(qf, kf, v, is_causal=causal_mask, scale=1 / math.sqrt(self.nope + self.rope_dim))
        return self.o_proj(o.transpose(1, 2).reshape(b, t, -1))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    B, T, S, E = 2, 5, 6, 16

    mha = nn.MultiheadAttention(E, 4, batch_first=True)
    x = torch.randn(B, T, E)
    kpm, am = padding(B, T, [0, 2]), causal(T)
    record("mha_self", "mha", {"embed_dim": E, "num_heads": 4}, mha, {"x": x}, {"key_padding": kpm, "attn": am},
           lambda m, i: m(i["x"], i["x"], i["x"], key_padding_mask=kpm, attn_mask=am, need_weights=False)[0])

    mha2 = nn.MultiheadAttention(E, 2, kdim=12, vdim=10, batch_first=True)
    q, k, v = torch.randn(B, 4, E), torch.randn(B, S, 12), torch.randn(B, S, 10)
    kpm2 = padding(B, S, [1, 3])
    record("mha_cross_kdim", "mha", {"embed_dim": E, "num_heads": 2, "kdim": 12, "vdim": 10}, mha2,
           {"x": q, "key": k, "value": v}, {"key_padding": kpm2},
           lambda m, i: m(i["x"], i["key"], i["value"], key_padding_mask=kpm2, need_weights=False)[0])

    for norm_first, act in [(False, "relu"), (True, "gelu")]:
        name = f"encoder_{'pre' if norm_first else 'post'}_{act}"
        layer = nn.TransformerEncoderLayer(E, 4, dim_feedforward=32, dropout=0.0, activation=act, batch_first=True, norm_first=norm_first)
        with torch.no_grad():
            for n_, p in layer.named_parameters():
                if n_.startswith("norm"):
                    p.uniform_(0.5, 1.5) if n_.endswith("weight") else p.uniform_(-0.5, 0.5)
        src, kpm = torch.randn(B, T, E), padding(B, T, [0, 1])
        masks = {"key_padding": kpm} if not norm_first else {"key_padding": kpm, "attn": causal(T)}
        record(name, "encoder", {"d_model": E, "nhead": 4, "dim_feedforward": 32, "activation": act, "norm_first": norm_first}, layer,
               {"x": src}, masks,
               lambda m, i, masks=masks: m(i["x"], src_mask=masks.get("attn"), src_key_padding_mask=masks["key_padding"]))

    for norm_first, act in [(False, "relu"), (True, "gelu")]:
        name = f"decoder_{'pre' if norm_first else 'post'}_{act}"
        layer = nn.TransformerDecoderLayer(E, 4, dim_feedforward=32, dropout=0.0, activation=act, batch_first=True, norm_first=norm_first)
        tgt, mem = torch.randn(B, T, E), torch.randn(B, S, E)
        mkpm = padding(B, S, [2, 0])
        record(name, "decoder", {"d_model": E, "nhead": 4, "dim_feedforward": 32, "activation": act, "norm_first": norm_first}, layer,
               {"x": tgt, "memory": mem}, {"attn": causal(T), "memory_key_padding": mkpm},
               lambda m, i: m(i["x"], i["memory"], tgt_mask=causal(T), memory_key_padding_mask=mkpm))

    mla = MLA(E, 4, kv_rank=8, nope=4, rope_dim=4, vdim=6)
    record("mla_causal", "mla", {"hidden_size": E, "num_heads": 4, "kv_lora_rank": 8, "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 6},
           mla, {"x": torch.randn(B, T, E)}, {}, lambda m, i: m(i["x"], True))

    class Rope(nn.Module):
        def forward(self, x):
            return rope(x, offset=3)
    record("rope_offset3", "rope", {"dim": 8, "offset": 3}, Rope(), {"x": torch.randn(B, 2, T, 8)}, {}, lambda m, i: m(i["x"]))

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"cases": json.dumps(cases), "torch": torch.__version__})
    print(f"wrote {len(cases)} cases, {len(tensors)} tensors to {OUT}")


if __name__ == "__main__":
    main()
