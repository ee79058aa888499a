"""PyTorch baseline for `cargo run --release --example quantize -- --bench`: inference speed of
the same model architectures in three variants, on the CPU:

  f32      eager forward under torch.inference_mode
  dynamic  torch.ao.quantization.quantize_dynamic (qint8 weights for every nn.Linear;
           activations quantized on the fly, convolutions stay f32)
  static   eager-mode post-training quantization on the fbgemm engine: QuantStub/DeQuantStub,
           conv+relu and linear+relu fused, get_default_qconfig('fbgemm'), prepare, calibrate
           on 8 random batches of 64, convert

Models (weights random: only speed is measured):
  mlp   [B, 784]        784-256-10
  wide  [B, 784]        784-1024-1024-10
  ffn   [B, 512]        512-2048-512
  cnn   [B, 1, 28, 28]  conv 1->16, pool, conv 16->32, pool, 1568-128-10

Each (model, batch) group warms every variant up 3 times, then calls the three in turn
(round robin) until --budget-ms has passed and each has at least 5 samples, and reports the
median milliseconds per forward call, the same protocol as `time_each` in
examples/quantize.rs, so that load from other processes hits every variant alike.

    pip install torch
    python benches/quantize_pytorch.py --threads 2 --json
    python benches/quantize_pytorch.py --threads 1 --batches 1,64 --models wide --budget-ms 1500

With --json it prints one JSON object per (model, batch) line:
    {"model": "wide", "batch": 64, "threads": 2, "f32_ms": ..., "dynamic_ms": ...,
     "static_ms": ..., "torch": "2.15.0"}
otherwise a markdown table. The Rust example runs this script when given `--pytorch <python>`
to put these rows in the same run. A sanity check of the quantized outputs against f32 goes
to stderr.
"""
import argparse
import copy
import json
import sys
import time
import warnings
from collections import OrderedDict

import torch
import torch.ao.quantization as tq
from torch import nn

# torch.ao's eager quantization warns that it is deprecated (in favour of torchao) on every
# quantize/prepare/convert call; the warnings say nothing about these results and would bury
# the sanity lines on stderr, so only these are silenced.
for _pattern in (
    "torch.ao.quantization is deprecated",
    "torch.quantize_per_tensor, torch.quantize_per_channel",
    "Please use quant_min and quant_max",
):
    warnings.filterwarnings("ignore", message=_pattern)

ENGINE = "fbgemm"
WARMUP = 3
MIN_SAMPLES = 5
CALIB_BATCHES, CALIB_BATCH = 8, 64


def mlp():
    return [("fc1", nn.Linear(784, 256)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(256, 10))], (784,)


def wide():
    layers = [
        ("fc1", nn.Linear(784, 1024)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(1024, 1024)), ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(1024, 10)),
    ]
    return layers, (784,)


def ffn():
    return [("fc1", nn.Linear(512, 2048)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(2048, 512))], (512,)


def cnn():
    layers = [
        ("conv1", nn.Conv2d(1, 16, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(32 * 7 * 7, 128)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(128, 10)),
    ]
    return layers, (1, 28, 28)


# name -> builder returning (named layers, input shape without the batch dimension)
MODELS = OrderedDict([("mlp", mlp), ("wide", wide), ("ffn", ffn), ("cnn", cnn)])


def fusable_pairs(body):
    """Names of each (Linear|Conv2d, ReLU) pair that follow each other, for fuse_modules."""
    named = list(body.named_children())
    return [
        [a, b]
        for (a, ma), (b, mb) in zip(named, named[1:])
        if isinstance(ma, (nn.Linear, nn.Conv2d)) and isinstance(mb, nn.ReLU)
    ]


def build_variants(name):
    """The f32 model, its dynamic and its static int8 versions, and the per-sample input shape."""
    layers, shape = MODELS[name]()
    f32 = nn.Sequential(OrderedDict(layers)).eval()

    dynamic = tq.quantize_dynamic(f32, {nn.Linear}, dtype=torch.qint8)

    # The f32 and dynamic models take no stubs: in f32 they would only add a call per forward.
    fused = tq.fuse_modules(copy.deepcopy(f32), fusable_pairs(f32))
    static = nn.Sequential(OrderedDict([("quant", tq.QuantStub()), ("body", fused), ("dequant", tq.DeQuantStub())]))
    static.eval()
    static.qconfig = tq.get_default_qconfig(ENGINE)
    tq.prepare(static, inplace=True)
    # Uniform [0, 1) like the Rust example's Tensor::rand and like MNIST pixels.
    with torch.no_grad():
        for _ in range(CALIB_BATCHES):
            static(torch.rand(CALIB_BATCH, *shape))
    tq.convert(static, inplace=True)
    return f32, dynamic, static, shape


def sanity_check(name, shape, f32, dynamic, static):
    """Warn on stderr (not fatal) when an int8 output drifts far from f32's: a wrong fusion or
    a calibration that saw the wrong range would show here, and would make the timing moot."""
    x = torch.rand(CALIB_BATCH, *shape)
    with torch.inference_mode():
        ref = f32(x)
        scale = ref.abs().max().item() or 1.0
        for label, model in (("dynamic", dynamic), ("static", static)):
            rel = (model(x) - ref).abs().max().item() / scale
            verdict = "ok" if rel < 0.1 else "LARGE (check the quantization)"
            print(f"sanity {name} {label}: max |int8 - f32| / max |f32| = {rel:.4f} {verdict}", file=sys.stderr)


def time_each(budget_s, fns):
    """Median seconds per call of each function, calling them round robin until the budget has
    passed and each has MIN_SAMPLES samples, so that noise hits every contender alike."""
    for f in fns:
        for _ in range(WARMUP):
            f()
    samples = [[] for _ in fns]
    start = time.perf_counter()
    while time.perf_counter() - start < budget_s or len(samples[0]) < MIN_SAMPLES:
        for f, s in zip(fns, samples):
            t = time.perf_counter()
            f()
            s.append(time.perf_counter() - t)
    # s[len // 2], as the Rust side picks it, so both report the same order statistic.
    return [sorted(s)[len(s) // 2] for s in samples]


def bench_batch(variants, shape, batch, budget_s):
    """Median ms per forward of (f32, dynamic, static) at one batch size."""
    x = torch.rand(batch, *shape)
    # One inference_mode around all calls, so its enter/exit cost is not part of any sample.
    with torch.inference_mode():
        secs = time_each(budget_s, [lambda m=m: m(x) for m in variants])
    return [s * 1e3 for s in secs]


def parse_list(text, convert, what):
    try:
        items = [convert(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad {what} list {text!r}")
    if not items:
        raise argparse.ArgumentTypeError(f"empty {what} list")
    return items


def batches_arg(text):
    batches = parse_list(text, int, "batch")
    if any(b < 1 for b in batches):
        raise argparse.ArgumentTypeError(f"batches must be positive, got {text!r}")
    return batches


def models_arg(text):
    models = parse_list(text, str, "model")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    return models


def parse_args():
    p = argparse.ArgumentParser(description="PyTorch f32 vs dynamic vs static int8 inference speed (CPU).")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: PyTorch's default)")
    p.add_argument("--batches", type=batches_arg, default=[1, 64], help="comma list, default 1,64")
    p.add_argument("--models", type=models_arg, default=list(MODELS), help="comma list, default mlp,wide,ffn,cnn")
    p.add_argument("--budget-ms", type=float, default=1500.0, help="time budget per (model, batch)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    args = p.parse_args()
    if args.threads < 0:
        p.error("--threads must be >= 0")
    if args.budget_ms <= 0:
        p.error("--budget-ms must be positive")
    return args


def setup(threads):
    """Threads and engine, before any parallel work (set_num_interop_threads fails after)."""
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        # Inference is one op after another: a single inter-op thread avoids idle spinners.
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    engines = torch.backends.quantized.supported_engines
    if ENGINE not in engines:
        raise RuntimeError(f"quantized engine {ENGINE!r} not in this PyTorch build (has {engines})")
    torch.backends.quantized.engine = ENGINE
    torch.manual_seed(0)


def main():
    args = parse_args()
    try:
        setup(args.threads)
        threads = torch.get_num_threads()
        version = torch.__version__.split("+")[0]
        if not args.json:
            print("| model | batch | threads | f32 ms | dynamic ms | static ms | torch |")
            print("|---|---:|---:|---:|---:|---:|---|")
        for name in args.models:
            # Built once per model, so every batch size runs the same weights.
            f32, dynamic, static, shape = build_variants(name)
            sanity_check(name, shape, f32, dynamic, static)
            for batch in args.batches:
                f, d, s = bench_batch((f32, dynamic, static), shape, batch, args.budget_ms / 1e3)
                if args.json:
                    row = {"model": name, "batch": batch, "threads": threads, "f32_ms": round(f, 5),
                           "dynamic_ms": round(d, 5), "static_ms": round(s, 5), "torch": version}
                    # Flushed per line: the Rust example reads rows as they come.
                    print(json.dumps(row), flush=True)
                else:
                    print(f"| {name} | {batch} | {threads} | {f:.4f} | {d:.4f} | {s:.4f} | {version} |", flush=True)
    except Exception as e:  # a clear one-line reason for the caller instead of a traceback
        print(f"quantize_pytorch.py: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
