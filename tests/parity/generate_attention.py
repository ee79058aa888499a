#!/usr/bin/env python3
"""PyTorch references for scaled_dot_product_attention.

Run from the repository root:

    pip install torch safetensors numpy
    python3 tests/parity/generate_attention.py

Writes tests/parity/fixtures/attention.safetensors, read by tensorbrain/tests/attention.rs.
Metadata `cases` is a JSON list of {name, causal ("none", "upper_left", "lower_right"),
scale (null = 1/sqrt(E)), mask ("none", "bool", "float"), dtype}; tensors per case:
`<name>/q`, `k`, `v`, optional `mask` (u8 1 = attend, or float added), `out`, `gout` (a random
upstream gradient) and `dq`, `dk`, `dv` (gradients of sum(out * gout)). One thread, fixed seed.
"""

import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "attention.safetensors")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tensors, cases = {}, []

    def add(name, q_shape, k_shape, v_shape, causal="none", mask=None, scale=None, dtype=torch.float32, mask_kind="none"):
        q = torch.randn(q_shape, dtype=dtype, requires_grad=True)
        k = torch.randn(k_shape, dtype=dtype, requires_grad=True)
        v = torch.randn(v_shape, dtype=dtype, requires_grad=True)
        L, S = q_shape[-2], k_shape[-2]
        attn_mask = mask
        if causal == "lower_right":
            tri = torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)
            attn_mask = tri if attn_mask is None else (attn_mask & tri)
        # Broadcast key/value heads by expanding, as the math path would.
        ke = k.expand(*q_shape[:-2], S, k_shape[-1])
        ve = v.expand(*q_shape[:-2], S, v_shape[-1])
        out = F.scaled_dot_product_attention(q, ke, ve, attn_mask=attn_mask, is_causal=(causal == "upper_left"), scale=scale)
        gout = torch.randn_like(out)
        dq, dk, dv = torch.autograd.grad(out, (q, k, v), gout)
        for key, t in [("q", q), ("k", k), ("v", v), ("out", out), ("gout", gout), ("dq", dq), ("dk", dk), ("dv", dv)]:
            tensors[f"{name}/{key}"] = t.detach().contiguous()
        if mask is not None:
            tensors[f"{name}/mask"] = (mask.to(torch.uint8) if mask.dtype == torch.bool else mask).contiguous()
        cases.append({"name": name, "causal": causal, "scale": scale, "mask": mask_kind,
                      "dtype": "f64" if dtype == torch.float64 else "f32"})

    B, H, L, S, E, Ev = 2, 3, 5, 7, 8, 6
    add("plain", (B, H, L, E), (B, H, S, E), (B, H, S, Ev))
    add("plain_f64", (B, H, L, E), (B, H, S, E), (B, H, S, Ev), dtype=torch.float64)
    add("scale", (B, H, L, E), (B, H, S, E), (B, H, S, Ev), scale=0.3)
    add("causal_upper_left", (B, H, 6, E), (B, H, 6, E), (B, H, 6, Ev), causal="upper_left")
    add("causal_upper_left_rect", (B, H, L, E), (B, H, S, E), (B, H, S, Ev), causal="upper_left")
    add("causal_lower_right", (B, H, L, E), (B, H, S, E), (B, H, S, Ev), causal="lower_right")
    bool_mask = torch.rand(L, S) < 0.7
    bool_mask[:, 0] = True
    add("bool_mask", (B, H, L, E), (B, H, S, E), (B, H, S, Ev), mask=bool_mask, mask_kind="bool")
    add("float_mask", (B, H, L, E), (B, H, S, E), (B, H, S, Ev), mask=torch.randn(B, 1, L, S), mask_kind="float")
    pad = torch.ones(B, 1, 1, S, dtype=torch.bool)
    pad[1, ..., 4:] = False
    add("key_padding", (B, H, L, E), (B, H, S, E), (B, H, S, Ev), mask=pad, mask_kind="bool")
    add("key_padding_causal", (B, H, S, E), (B, H, S, E), (B, H, S, Ev), mask=pad, mask_kind="bool", causal="lower_right")
    empty_row = torch.rand(L, S) < 0.7
    empty_row[2, :] = False  # query 2 sees no key: PyTorch (>= 2.5) gives zeros
    add("fully_masked_row", (B, H, L, E), (B, H, S, E), (B, H, S, Ev), mask=empty_row, mask_kind="bool")
    add("three_d", (B, L, E), (B, S, E), (B, S, Ev))
    add("mqa_broadcast_heads", (B, H, L, E), (B, 1, S, E), (B, 1, S, Ev))
    # Longer than one 64-row tile in both directions.
    add("long_causal", (1, 2, 150, 16), (1, 2, 150, 16), (1, 2, 150, 16), causal="upper_left")
    add("long_padding", (2, 2, 70, 16), (2, 2, 130, 16), (2, 2, 130, 16), mask=torch.rand(2, 1, 1, 130) < 0.8, mask_kind="bool")

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"cases": json.dumps(cases), "torch": torch.__version__})
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
