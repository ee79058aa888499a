"""Classifies MNIST test digits through a running serve-mlp or serve-cnn with NVIDIA's client.

    cargo run --release --example mnist -- --model mlp --epochs 10
    cargo run --release -p serve-mnist --bin serve-mlp -- --weights runs/mlp-mnist/model.safetensors &
    pip install 'tritonclient[http]' numpy
    python3 examples/serve/mnist_client.py --model mlp --count 10000

Sends `--batch` images per request (binary tensors), several requests in flight, and prints
the accuracy, which matches what `examples/mnist.rs` reported for the same checkpoint.
"""

import argparse
import gzip
import time

import numpy as np
import tritonclient.http as httpclient


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="localhost:8000")
    p.add_argument("--model", default="mlp")
    p.add_argument("--data", default="../shared/data/mnist")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()

    images = read_idx(f"{args.data}/t10k-images-idx3-ubyte.gz")[: args.count]
    labels = read_idx(f"{args.data}/t10k-labels-idx1-ubyte.gz")[: args.count]
    # Normalised as examples/mnist.rs trains on it: MNIST's mean and std.
    x = ((images.astype(np.float32) / 255.0 - 0.1307) / 0.3081).reshape(-1, 1, 28, 28)

    client = httpclient.InferenceServerClient(args.url, concurrency=4)
    print(client.get_model_metadata(args.model))
    start = time.perf_counter()
    pending = []
    for lo in range(0, len(x), args.batch):
        inp = httpclient.InferInput("x", list(x[lo : lo + args.batch].shape), "FP32")
        inp.set_data_from_numpy(x[lo : lo + args.batch])
        pending.append(client.async_infer(args.model, [inp]))
    predictions = np.concatenate([r.get_result().as_numpy("output").argmax(1) for r in pending])
    elapsed = time.perf_counter() - start
    accuracy = (predictions == labels).mean()
    print(f"{len(x)} images in {elapsed:.2f} s: accuracy {100 * accuracy:.2f}%")


if __name__ == "__main__":
    main()
