//! Corpus-level translation and recognition metrics, computed as the reference tools do:
//! BLEU and chrF as `sacrebleu` (2.x defaults), CER and WER as `jiwer`.

mod bleu;
mod chrf;
mod edit;

pub use bleu::{corpus_bleu, tokenize_13a, BleuScore};
pub use chrf::corpus_chrf;
pub use edit::{cer, levenshtein, wer};

use crate::tensor::{Error, Result};

fn check_lengths(metric: &str, hyps: usize, refs: usize) -> Result<()> {
    if hyps != refs {
        return Err(Error::Msg(format!("{metric}: {hyps} hypotheses but {refs} references (one reference per hypothesis)")));
    }
    Ok(())
}
