//! BLEU and chrF against sacrebleu 2.x and WER/CER against jiwer, on the corpora of
//! `tests/parity/generate_metrics.py` (translations, 13a tokenisation corner cases, orders
//! without matches, empty and short hypotheses, non-ASCII text). Scores agree within 1e-9;
//! the 13a tokens and BLEU's n-gram counts must be identical.

use tensorbrain::text::metrics::{cer, corpus_bleu, corpus_chrf, levenshtein, tokenize_13a, wer};

#[test]
fn metrics_match_sacrebleu_and_jiwer() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/parity/fixtures/metrics.json");
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let corpora = fx["corpora"].as_array().unwrap();
    assert_eq!(corpora.len(), 5);
    for c in corpora {
        let name = c["name"].as_str().unwrap();
        let strs = |k: &str| c[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>();
        let (hyps, refs) = (strs("hyps"), strs("refs"));
        for (line, want) in hyps.iter().chain(&refs).zip(c["tokens_13a"].as_array().unwrap()) {
            let want: Vec<&str> = want.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(tokenize_13a(line.trim_end()), want, "{name}: 13a tokens of {line:?}");
        }
        let bleu = corpus_bleu(&hyps, &refs).unwrap();
        let counts = |k: &str| c[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect::<Vec<_>>();
        assert_eq!(bleu.correct.to_vec(), counts("bleu_counts"), "{name}");
        assert_eq!(bleu.total.to_vec(), counts("bleu_totals"), "{name}");
        assert_eq!((bleu.sys_len, bleu.ref_len), (c["sys_len"].as_u64().unwrap() as usize, c["ref_len"].as_u64().unwrap() as usize));
        let close = |what: &str, got: f64, key: &str| {
            let want = c[key].as_f64().unwrap();
            assert!((got - want).abs() < 1e-9, "{name} {what}: {got} vs {want}");
        };
        close("BLEU", bleu.score, "bleu");
        close("chrF", corpus_chrf(&hyps, &refs).unwrap(), "chrf");
        close("WER", wer(&hyps, &refs).unwrap(), "wer");
        close("CER", cer(&hyps, &refs).unwrap(), "cer");
        println!("{name}: BLEU {:.2} chrF {:.2}", bleu.score, corpus_chrf(&hyps, &refs).unwrap());
    }
}

#[test]
fn edit_distance_and_errors() {
    assert_eq!(levenshtein(b"kitten", b"sitting"), 3);
    assert_eq!(levenshtein::<u8>(b"", b"abc"), 3);
    assert_eq!(wer(&["a b c"], &["a x c d"]).unwrap(), 0.5);
    assert!(corpus_bleu(&["a"], &["a", "b"]).unwrap_err().to_string().contains("1 hypotheses but 2 references"));
    assert!(wer(&["a"], &[""]).unwrap_err().to_string().contains("references are empty"));
    assert!((corpus_bleu(&["the cat sat on the mat"], &["the cat sat on the mat"]).unwrap().score - 100.0).abs() < 1e-9);
}
