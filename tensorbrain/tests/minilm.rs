//! all-MiniLM-L6-v2 sentence embeddings against sentence-transformers
//! (`tests/parity/generate_minilm.py`): the tokenizer's ids equal Hugging Face's, and 56
//! sentences of 1 to ~90 tokens, embedded in padded batches of 16, are within 1e-4 (max abs)
//! of PyTorch's. The model is read from `../shared/models/all-MiniLM-L6-v2` beside the
//! repository; without it the test says so and skips.
//!
//! Also: BPE training round-trips text and saves and loads as `tokenizer.json`.

use std::path::PathBuf;

use tensorbrain::models::SentenceEmbedder;
use tensorbrain::text::{BpeOptions, Tokenizer};

fn model_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/models/all-MiniLM-L6-v2"))
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let dir = model_dir();
    if !dir.join("model.safetensors").exists() {
        eprintln!("SKIPPED minilm_embeddings_match_sentence_transformers: no model at {} (see ../shared/data/README.md)", dir.display());
        return;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/parity/fixtures/minilm.safetensors");
    let (fx, meta) = tensorbrain::checkpoint::load_safetensors_with_metadata(std::path::Path::new(path)).unwrap();
    let sentences: Vec<String> = serde_json::from_str(&meta["sentences"]).unwrap();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    assert!(refs.len() >= 50);
    let embedder = SentenceEmbedder::from_dir(&dir).unwrap();

    // The same ids and mask as Hugging Face's tokenizer, padded to the longest sentence.
    let batch = embedder.tokenizer.encode_batch(&refs, true, 0).unwrap();
    assert_eq!(batch.ids.to_vec::<i64>(), fx["input_ids"].to_vec::<i64>(), "token ids differ from Hugging Face's");
    assert_eq!(batch.attention_mask.to_vec::<u8>(), fx["attention_mask"].to_vec::<u8>());

    let want = fx["embeddings"].to_vec2::<f32>();
    let mut worst = 0.0f32;
    for (chunk, want_chunk) in refs.chunks(16).zip(want.chunks(16)) {
        let got = embedder.embed(chunk).unwrap().to_vec2::<f32>();
        for (g, w) in got.iter().zip(want_chunk) {
            for (a, b) in g.iter().zip(w) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    println!("MiniLM: max abs difference from sentence-transformers over {} sentences: {worst:.2e}", refs.len());
    assert!(worst < 1e-4, "max abs difference {worst}");
    // Padding does not change a sentence's embedding: alone equals within the batch.
    let alone = embedder.embed(&refs[..1]).unwrap().to_vec::<f32>();
    let diff = alone.iter().zip(&want[0]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn bpe_training_round_trips_text() {
    let corpus = [
        "The file could not be opened.",
        "Il file non può essere aperto.",
        "Cannot open the directory %s: permission denied",
        "Impossibile aprire la directory %s: permesso negato",
        "The operation completed successfully.",
        "L'operazione è stata completata con successo.",
    ];
    let texts = corpus.iter().cycle().take(600).copied();
    let opts = BpeOptions { vocab_size: 400, min_frequency: 2, special_tokens: vec!["<pad>".into(), "<s>".into(), "</s>".into()] };
    let tok = Tokenizer::train_bpe(texts, &opts).unwrap();
    assert_eq!(tok.token_to_id("<pad>"), Some(0));
    assert_eq!(tok.token_to_id("</s>"), Some(2));
    assert!(tok.vocab_size() <= 400 && tok.vocab_size() > 256, "{}", tok.vocab_size());
    for s in corpus.iter().chain(["unseen wörds: ß, 日本, 🚀"].iter()) {
        let ids = tok.encode(s, false).unwrap();
        assert_eq!(&tok.decode(&ids, true).unwrap(), s);
    }
    // Merges learned: a frequent word is one or two tokens, not one per byte.
    assert!(tok.encode(" operation", false).unwrap().len() <= 2, "{:?}", tok.encode(" operation", false));
    let path = std::env::temp_dir().join(format!("tb-bpe-{}.json", std::process::id()));
    tok.save(&path).unwrap();
    let back = Tokenizer::from_file(&path).unwrap();
    assert_eq!(back.encode(corpus[3], false).unwrap(), tok.encode(corpus[3], false).unwrap());
    std::fs::remove_file(&path).ok();
    let missing = Tokenizer::from_file("/no/such/tokenizer.json").err().unwrap().to_string();
    assert!(missing.contains("/no/such/tokenizer.json"), "{missing}");
    let batch = tok.encode_batch(&["a", "a longer one"], false, 0).unwrap();
    assert_eq!(batch.ids.shape()[0], 2);
    assert_eq!(batch.key_padding_mask().unwrap().to_vec::<u8>()[..batch.lengths[1]].iter().filter(|&&p| p == 1).count(), batch.lengths[1] - batch.lengths[0]);
}
