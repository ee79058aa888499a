"""PyTorch reference values for the fake quantization of quantization-aware training
(tests/quant.rs): `torch.fake_quantize_per_tensor_affine` and
`torch.fake_quantize_per_channel_affine`, forward values and the gradient of `sum(out * g)`.

    pip install torch safetensors
    python tests/quant/make_fake_quant_fixtures.py   # writes tests/quant/torch_fake_quant.safetensors

CI has no torch: the output file is committed.
"""
import os

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
out = {}

# Per tensor, u8 affine: a range that clips both tails, plus exact ties (x / scale = k + .5).
scale, zero = 0.05, 37
x = torch.cat([torch.randn(300) * 4.0, torch.arange(-20, 21, dtype=torch.float32) * 0.025])
x.requires_grad_(True)
g = torch.randn(x.shape)
y = torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)
(y * g).sum().backward()
out["pt.x"], out["pt.g"] = x.detach(), g
out["pt.y"], out["pt.dx"] = y.detach(), x.grad
out["pt.scale"], out["pt.zero_point"] = torch.tensor([scale]), torch.tensor([zero], dtype=torch.int32)

# Per channel along axis 1 (a Linear's Wᵀ), i8 symmetric, with one channel's range too small
# for its values so that the clamp (and a zero gradient) shows up.
w = torch.randn(16, 6) * torch.tensor([0.1, 0.5, 1.0, 2.0, 0.02, 3.0])
w.requires_grad_(True)
gw = torch.randn(w.shape)
scales = torch.tensor([0.001, 0.004, 0.008, 0.016, 0.0001, 0.02])
zeros = torch.zeros(6, dtype=torch.int32)
yw = torch.fake_quantize_per_channel_affine(w, scales, zeros, 1, -128, 127)
(yw * gw).sum().backward()
out["pc.w"], out["pc.g"] = w.detach(), gw
out["pc.y"], out["pc.dw"] = yw.detach(), w.grad
out["pc.scale"], out["pc.zero_point"] = scales, zeros

save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(os.path.dirname(__file__), "torch_fake_quant.safetensors"))
print("wrote", len(out), "tensors with torch", torch.__version__)
