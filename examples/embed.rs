//! Sentence embeddings with all-MiniLM-L6-v2 and their cosine similarities.
//!
//! ```sh
//! cargo run --release --example embed                          # built-in sentences
//! cargo run --release --example embed -- "A cat." "A kitten."   # your own
//! cargo run --release --example embed -- --bench               # sentences/s, batches of 32
//! python3 benches/embed_pytorch.py                             # the same in PyTorch
//! ```
//!
//! The model folder holds `tokenizer.json`, `config.json` and `model.safetensors` (the
//! Hugging Face hub's `sentence-transformers/all-MiniLM-L6-v2`); it is read from
//! `../shared/models/all-MiniLM-L6-v2` unless `--model DIR` says otherwise.

use std::time::Instant;

use clap::Parser;
use tensorbrain::models::SentenceEmbedder;

#[derive(Parser)]
struct Args {
    /// The model directory.
    #[arg(long, default_value = "../shared/models/all-MiniLM-L6-v2")]
    model: String,
    /// Measure throughput instead of printing similarities.
    #[arg(long)]
    bench: bool,
    /// Kernel threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    sentences: Vec<String>,
}

const DEFAULT: [&str; 6] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "A monkey is playing drums.",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tensorbrain::set_num_threads(args.threads);
    let embedder = SentenceEmbedder::from_dir(&args.model)?;
    if args.bench {
        return bench(&embedder);
    }
    let sentences: Vec<&str> = if args.sentences.is_empty() { DEFAULT.to_vec() } else { args.sentences.iter().map(String::as_str).collect() };
    let emb = embedder.embed(&sentences)?.to_vec2::<f32>();
    println!("cosine similarities (embeddings are unit length, so these are dot products):\n");
    for (i, a) in emb.iter().enumerate() {
        let best = (0..emb.len()).filter(|&j| j != i).max_by(|&x, &y| dot(a, &emb[x]).total_cmp(&dot(a, &emb[y])));
        let row: Vec<String> = emb.iter().map(|b| format!("{:5.2}", dot(a, b))).collect();
        println!("{}  {:<40} closest: {}", row.join(" "), sentences[i], best.map_or("-", |j| sentences[j]));
    }
    Ok(())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Sentences/s over 512 sentences of mixed length in batches of 32 (the PyTorch script
/// embeds the same sentences the same way).
fn bench(embedder: &SentenceEmbedder) -> Result<(), Box<dyn std::error::Error>> {
    let words = "the quick brown fox jumps over a lazy dog while engineers measure sentence embedding throughput".split(' ').collect::<Vec<_>>();
    let sentences: Vec<String> = (0..512).map(|i| words.iter().cycle().skip(i % 7).take(4 + i % 13).copied().collect::<Vec<_>>().join(" ")).collect();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    embedder.embed(&refs[..32])?; // warm-up
    let start = Instant::now();
    for chunk in refs.chunks(32) {
        embedder.embed(chunk)?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("MiniLM-L6 embeddings: {} sentences in {secs:.2} s = {:.1} sentences/s (batch 32, {} threads)", refs.len(), refs.len() as f64 / secs, tensorbrain::num_threads());
    Ok(())
}
