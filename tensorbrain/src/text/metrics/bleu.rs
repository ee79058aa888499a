//! BLEU (Papineni et al. 2002) as `sacrebleu.corpus_bleu` computes it by default: mteval-v13a
//! tokenisation, n-grams up to 4, corpus-level counts, brevity penalty, and the "exp"
//! smoothing of orders without a match.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

use super::check_lengths;
use crate::tensor::Result;

const MAX_ORDER: usize = 4;

/// A corpus BLEU score (0-100) and its parts.
#[derive(Clone, Debug, PartialEq)]
pub struct BleuScore {
    pub score: f64,
    /// Matched and total n-grams per order, over the corpus.
    pub correct: [usize; MAX_ORDER],
    pub total: [usize; MAX_ORDER],
    /// Per-order precisions (0-100, smoothed).
    pub precisions: [f64; MAX_ORDER],
    pub brevity_penalty: f64,
    pub sys_len: usize,
    pub ref_len: usize,
}

fn rules() -> &'static [(Regex, &'static str); 4] {
    static RULES: OnceLock<[(Regex, &'static str); 4]> = OnceLock::new();
    RULES.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("valid 13a pattern");
        [
            // Punctuation and symbols become separate tokens.
            (re(r"([\{-~\[-`\x20-&\(-\+:-@/])"), " $1 "),
            // Periods and commas unless preceded by a digit ...
            (re(r"([^0-9])([\.,])"), "$1 $2 "),
            // ... or followed by one.
            (re(r"([\.,])([^0-9])"), " $1 $2"),
            // A dash after a digit.
            (re(r"([0-9])(-)"), "$1 $2 "),
        ]
    })
}

/// sacrebleu's `13a` tokeniser (mteval-v13a's), as a list of tokens.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    let mut s = format!(" {line} ");
    for (re, rep) in rules() {
        s = re.replace_all(&s, *rep).into_owned();
    }
    s.split_whitespace().map(str::to_string).collect()
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// Corpus BLEU of `hypotheses` against one reference each (sacrebleu's defaults).
pub fn corpus_bleu(hypotheses: &[&str], references: &[&str]) -> Result<BleuScore> {
    check_lengths("corpus_bleu", hypotheses.len(), references.len())?;
    let (mut correct, mut total) = ([0usize; MAX_ORDER], [0usize; MAX_ORDER]);
    let (mut sys_len, mut ref_len) = (0, 0);
    for (h, r) in hypotheses.iter().zip(references) {
        let (h, r) = (tokenize_13a(h.trim_end()), tokenize_13a(r.trim_end()));
        sys_len += h.len();
        ref_len += r.len();
        for n in 1..=MAX_ORDER {
            let (hc, rc) = (ngrams(&h, n), ngrams(&r, n));
            total[n - 1] += h.len().saturating_sub(n - 1);
            correct[n - 1] += hc.iter().map(|(g, &c)| c.min(rc.get(g).copied().unwrap_or(0))).sum::<usize>();
        }
    }
    Ok(score_from_counts(correct, total, sys_len, ref_len))
}

fn score_from_counts(correct: [usize; MAX_ORDER], total: [usize; MAX_ORDER], sys_len: usize, ref_len: usize) -> BleuScore {
    let brevity_penalty = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0; MAX_ORDER];
    let done = |score, precisions| BleuScore { score, correct, total, precisions, brevity_penalty, sys_len, ref_len };
    if correct.iter().all(|&c| c == 0) {
        return done(0.0, precisions);
    }
    let mut smooth = 1.0;
    for n in 0..MAX_ORDER {
        if total[n] == 0 {
            break;
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    // sacrebleu's floored log: log(0) counts as -9999999999.
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    let score = brevity_penalty * (precisions.iter().map(|&p| log(p)).sum::<f64>() / MAX_ORDER as f64).exp();
    done(score, precisions)
}
