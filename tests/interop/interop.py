"""Checkpoints both ways between PyTorch and TensorBrain, through safetensors.

    python3 tests/interop/interop.py        # from the repository root; needs torch, safetensors

1. PyTorch -> TensorBrain: writes fixtures/torch_small_cnn.safetensors (a state_dict) and
   fixtures/torch_small_cnn_io.safetensors (an input and PyTorch's output), then runs
   `cargo test --test interop loads_a_pytorch_checkpoint`, which loads them into the same
   `#[model]` and compares outputs. The fixtures are committed, so CI runs that test without
   PyTorch.
2. TensorBrain -> PyTorch: runs the ignored `writes_a_checkpoint_for_pytorch`, loads the
   checkpoint it wrote into the PyTorch model (`load_state_dict`, strict) and compares outputs.
"""
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(676, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        h = torch.flatten(F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2), 1)
        return self.fc2(torch.tanh(self.fc1(h)))


def cargo_test(name, *extra, env=None):
    cmd = ["cargo", "test", "--test", "interop", "--", "--exact", name, "--nocapture", *extra]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env=env)


def main():
    torch.manual_seed(0)
    fixtures = os.path.join(HERE, "fixtures")
    os.makedirs(fixtures, exist_ok=True)

    # PyTorch -> TensorBrain.
    net = SmallCnn()
    with torch.no_grad():
        for _ in range(3):  # move the batch-norm running statistics
            net(torch.randn(8, 1, 28, 28) * 2 + 0.5)
    net.eval()
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        y = net(x)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, os.path.join(fixtures, "torch_small_cnn.safetensors"))
    save_file({"input": x, "output": y}, os.path.join(fixtures, "torch_small_cnn_io.safetensors"))
    cargo_test("loads_a_pytorch_checkpoint")

    # TensorBrain -> PyTorch.
    with tempfile.TemporaryDirectory() as out:
        cargo_test("writes_a_checkpoint_for_pytorch", "--ignored", env={**os.environ, "TB_INTEROP_OUT": out})
        net = SmallCnn().eval()
        net.load_state_dict(load_file(os.path.join(out, "tb_small_cnn.safetensors")), strict=True)
        io = load_file(os.path.join(out, "tb_small_cnn_io.safetensors"))
        with torch.no_grad():
            got = net(io["input"])
        err = ((got - io["output"]).abs() / (1e-5 + 1e-4 * io["output"].abs())).max().item()
        print(f"TensorBrain checkpoint in PyTorch: worst error / (atol 1e-5 + rtol 1e-4 |want|) = {err:.3f}")
        if err > 1.0:
            sys.exit("TensorBrain's outputs differ from PyTorch's on the same weights")
    print("interop: both directions agree")


if __name__ == "__main__":
    main()
