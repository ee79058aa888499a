#!/usr/bin/env python3
"""PyTorch twin of `cargo run --release --example embed -- --bench`: sentence-transformers'
all-MiniLM-L6-v2 on the same 512 sentences in batches of 32.

    pip install torch sentence-transformers
    python3 benches/embed_pytorch.py [--threads N] [--model DIR]
"""

import argparse
import time

import torch
from sentence_transformers import SentenceTransformer

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="../shared/models/all-MiniLM-L6-v2")
ap.add_argument("--threads", type=int, default=0)
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
words = "the quick brown fox jumps over a lazy dog while engineers measure sentence embedding throughput".split(" ")
sentences = []
for i in range(512):
    k = 4 + i % 13
    seq = [words[(i % 7 + j) % len(words)] for j in range(k)]
    sentences.append(" ".join(seq))
model = SentenceTransformer(a.model, device="cpu")
with torch.inference_mode():
    model.encode(sentences[:32], batch_size=32)
    start = time.perf_counter()
    model.encode(sentences, batch_size=32)
    secs = time.perf_counter() - start
print(f"PyTorch MiniLM-L6 embeddings: {len(sentences)} sentences in {secs:.2f} s = {len(sentences) / secs:.1f} sentences/s "
      f"(batch 32, {torch.get_num_threads()} threads)")
