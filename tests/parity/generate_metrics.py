#!/usr/bin/env python3
"""Reference BLEU/chrF (sacrebleu) and WER/CER (jiwer) values for tensorbrain::text::metrics.

Run from the repository root:

    pip install sacrebleu jiwer
    python3 tests/parity/generate_metrics.py

Writes tests/parity/fixtures/metrics.json: a list of corpora, each with `hyps`, `refs` and the
scores sacrebleu.corpus_bleu / corpus_chrf (default settings) and jiwer.wer / jiwer.cer
compute for them, plus BLEU's n-gram counts and the 13a tokenisation of every line.
Read by tensorbrain/tests/metrics.rs.
"""

import json
import os

import jiwer
import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "metrics.json")

CORPORA = {
    "translations": (
        ["Il file non può essere aperto.", "Impossibile aprire la directory %s: permesso negato",
         "L'operazione è completata con successo.", "Errore: memoria esaurita", "salva il documento"],
        ["Il file non può essere aperto.", "Impossibile aprire la cartella %s: permesso negato",
         "L'operazione è stata completata con successo.", "Errore: memoria esaurita.", "Salva il documento corrente"],
    ),
    "tokenization": (
        ["Prices rose 1,000.50 dollars - a 3-4% gain (approx.) & more;",
         "He said: \"no\" &amp; left at 10.30, then...", "x-y 2-3 a.b 1.5 ,a b, end.", "A&quot;B &lt;tag&gt;"],
        ["Prices rose 1,000.50 dollars - a 3-4% gain (approx.) and more.",
         "He said \"no\" & left at 10.30 then.", "x - y 2 - 3 a. b 1.5, a b, end .", "A\"B <tag>"],
    ),
    "no_4gram_match": (
        ["the cat sat", "a dog ran fast today", "hello"],
        ["the cat was sitting", "a dog ran quickly today", "hello there"],
    ),
    "short_hypotheses": (
        ["ok", "", "yes please"],
        ["okay then", "nothing here at all", "yes please do"],
    ),
    "unicode": (
        ["Der schnelle braune Fuchs springt über den Hund", "日本語 の 文", "naïve café — déjà vu"],
        ["Der schnelle braune Fuchs sprang über den faulen Hund", "日本語 の 文章", "naive café - déjà vu"],
    ),
}


def main():
    tok = Tokenizer13a()
    out = []
    for name, (hyps, refs) in CORPORA.items():
        bleu = sacrebleu.corpus_bleu(hyps, [refs])
        chrf = sacrebleu.corpus_chrf(hyps, [refs])
        nonempty = [(h, r) for h, r in zip(hyps, refs)]
        out.append({
            "name": name, "hyps": hyps, "refs": refs,
            "bleu": bleu.score, "bleu_counts": bleu.counts, "bleu_totals": bleu.totals,
            "sys_len": bleu.sys_len, "ref_len": bleu.ref_len,
            "chrf": chrf.score,
            "wer": jiwer.wer([r for _, r in nonempty], [h for h, _ in nonempty]),
            "cer": jiwer.cer([r for _, r in nonempty], [h for h, _ in nonempty]),
            "tokens_13a": [tok(x.rstrip()).split() for x in hyps + refs],
        })
    with open(OUT, "w") as f:
        json.dump({"sacrebleu": sacrebleu.__version__, "corpora": out}, f, indent=1, ensure_ascii=False)
    print(f"wrote {len(out)} corpora to {OUT}")


if __name__ == "__main__":
    main()
