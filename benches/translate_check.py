#!/usr/bin/env python3
"""Checks examples/translate.rs's scores with the reference tools on the same output.

    pip install sacrebleu jiwer
    python3 benches/translate_check.py runs/translate-mha [runs/translate-mla ...]

Reads each run's test_hyps.txt, test_refs.txt and results.json, recomputes BLEU and chrF with
sacrebleu and CER/WER with jiwer, and fails unless TensorBrain's numbers agree within 0.1
(BLEU, chrF) and 1e-6 (CER, WER).
"""

import json
import os
import sys

import jiwer
import sacrebleu

ok = True
for run in sys.argv[1:]:
    read = lambda n: open(os.path.join(run, n), encoding="utf-8").read().split("\n")[:-1]
    hyps, refs = read("test_hyps.txt"), read("test_refs.txt")
    ours = json.load(open(os.path.join(run, "results.json")))
    theirs = {
        "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
        "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
        "cer": jiwer.cer(refs, hyps),
        "wer": jiwer.wer(refs, hyps),
    }
    for k, tol in [("bleu", 0.1), ("chrf", 0.1), ("cer", 1e-6), ("wer", 1e-6)]:
        good = abs(ours[k] - theirs[k]) <= tol
        ok &= good
        print(f"{run} {k}: TensorBrain {ours[k]:.4f}, reference {theirs[k]:.4f} {'ok' if good else 'MISMATCH'}")
sys.exit(0 if ok else 1)
