"""PyTorch reference values for tests/quant.rs (quantization parameters, quantize and
dequantize per tensor and per channel, and quantized Linear / Linear+ReLU).

    pip install torch --index-url https://download.pytorch.org/whl/cpu
    python tests/quant/make_fixtures.py      # writes tests/quant/torch_quant.safetensors

CI has no torch: the output file is committed.
"""
import os

import torch
from safetensors.torch import save_file
from torch.ao.quantization.observer import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PerChannelMinMaxObserver,
)

torch.manual_seed(0)
out = {}

# Activations: a skewed range so the affine zero point is not trivial.
x = torch.randn(257) * 2.0 + 0.7
out["x"] = x

obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
obs(x)
s, z = obs.calculate_qparams()
out["minmax_affine_u8.scale"], out["minmax_affine_u8.zero_point"] = s.float(), z.int()
q = torch.quantize_per_tensor(x, float(s), int(z), torch.quint8)
out["x_q_u8"] = q.int_repr()
out["x_dq_u8"] = q.dequantize()

obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
obs(x)
s, z = obs.calculate_qparams()
out["minmax_symmetric_i8.scale"], out["minmax_symmetric_i8.zero_point"] = s.float(), z.int()
q = torch.quantize_per_tensor(x, float(s), int(z), torch.qint8)
out["x_q_i8"] = q.int_repr()

batches = [torch.randn(64) * (1 + i) - i * 0.3 for i in range(3)]
obs = MovingAverageMinMaxObserver(averaging_constant=0.01, dtype=torch.quint8)
for i, b in enumerate(batches):
    out[f"ma_batch{i}"] = b
    obs(b)
s, z = obs.calculate_qparams()
out["moving_average_u8.scale"], out["moving_average_u8.zero_point"] = s.float(), z.int()

# Rounding ties: x / scale lands exactly on .5 (scale is a power of two).
ties = torch.arange(-40, 41, dtype=torch.float32) * 0.25
out["ties"] = ties
out["ties_q_u8"] = torch.quantize_per_tensor(ties, 0.5, 10, torch.quint8).int_repr()

# Weights per output channel, symmetric i8.
w = torch.randn(24, 40) * torch.linspace(0.05, 1.0, 24)[:, None]
out["w"] = w
obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
obs(w)
ws, wz = obs.calculate_qparams()
out["w_scale"], out["w_zero_point"] = ws.float(), wz.int()
wq = torch.quantize_per_channel(w, ws.double(), wz.long(), 0, torch.qint8)
out["w_q"] = wq.int_repr()
out["w_dq"] = wq.dequantize()

# Quantized Linear (+ReLU), fbgemm, static: u8 input, i8 per-channel weight, f32 bias,
# requantized u8 output.
torch.backends.quantized.engine = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else "x86"
a = torch.randn(5, 40) * 1.5 + 0.2
b = torch.randn(24) * 0.3
in_s, in_z = 0.02, 57
out_s, out_z = 0.05, 100
aq = torch.quantize_per_tensor(a, in_s, in_z, torch.quint8)
out["lin.a_q"] = aq.int_repr()
out["lin.in_scale"], out["lin.in_zero_point"] = torch.tensor([in_s]), torch.tensor([in_z], dtype=torch.int32)
out["lin.out_scale"], out["lin.out_zero_point"] = torch.tensor([out_s]), torch.tensor([out_z], dtype=torch.int32)
out["lin.bias"] = b
packed = torch.ops.quantized.linear_prepack(wq, b)
out["lin.y_q"] = torch.ops.quantized.linear(aq, packed, out_s, out_z).int_repr()
out["lin.y_relu_q"] = torch.ops.quantized.linear_relu(aq, packed, out_s, out_z).int_repr()
# Dynamic: f32 in and out, the input range taken from the batch (reduce_range off).
out["lin.y_dynamic"] = torch.ops.quantized.linear_dynamic(a, packed, False)
out["lin.a"] = a

here = os.path.dirname(os.path.abspath(__file__))
save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(here, "torch_quant.safetensors"))
print(f"wrote {len(out)} tensors; torch {torch.__version__}, engine {torch.backends.quantized.engine}")
