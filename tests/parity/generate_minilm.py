#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 from sentence-transformers.

Run from the repository root (the model folder sits beside the repository, see
../shared/data/README.md; users get it from the Hugging Face hub as
sentence-transformers/all-MiniLM-L6-v2):

    pip install torch sentence-transformers safetensors
    python3 tests/parity/generate_minilm.py [MODEL_DIR]

Writes tests/parity/fixtures/minilm.safetensors: `embeddings` [N, 384] (float32, what
SentenceTransformer.encode returns: mean pooling and L2 normalisation), `input_ids` and
`attention_mask` [N, T] (the Hugging Face tokenizer's ids, padded to the longest), and the
sentences as JSON in the metadata. Read by tests/minilm.rs.
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")
OUT = os.path.join(HERE, "fixtures", "minilm.safetensors")

SENTENCES = [
    "Hello world.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The cat sat on the mat.",
    "Dogs are loyal animals.",
    "I love programming in Rust!",
    "Deep learning frameworks make gradients easy to compute.",
    "Attention is all you need.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "The quick brown fox jumps over the lazy dog.",
    "ok",
    "?",
    "Is it going to rain tomorrow in Rome",
    "The weather forecast says sunny skies all week.",
    "Stock markets fell sharply after the announcement.",
    "The central bank raised interest rates by 0.25 percentage points.",
    "E = mc^2 is the most famous equation in physics.",
    "She sells sea shells by the sea shore.",
    "To be, or not to be, that is the question.",
    "Il gatto dorme sul divano.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "日本語の文も試してみます。",
    "Emoji test: 🚀🔥 are popular on social media.",
    "Numbers like 3.14159, 42 and 1,000,000 appear in text.",
    "URLs such as https://example.com/path?q=1 are tokenized too.",
    "C'est la vie, mon ami.",
    "Can you recommend a good book about machine learning?",
    "The patient was given 5 mg of the medication twice daily.",
    "Photosynthesis converts light energy into chemical energy.",
    "The Eiffel Tower was completed in 1889.",
    "He didn't know what to say, so he said nothing at all.",
    "Please remember to submit your report by Friday afternoon.",
    "A red car is parked next to a blue truck.",
    "The orchestra performed Beethoven's Ninth Symphony.",
    "Water boils at 100 degrees Celsius at sea level.",
    "MiniLM is a small and fast sentence embedding model.",
    "Tokenization splits text into subword units.",
    "   leading and trailing spaces   ",
    "ALL CAPS SENTENCE WITH SHOUTING",
    "mixed CaSe WoRdS and under_scores and hyphen-ated words",
    "A very long sentence that keeps going, describing in considerable detail how a small team of "
    "engineers built a deep learning framework in Rust, checked every operation against PyTorch, "
    "wrote kernels that tile attention so that the score matrix never has to be stored, trained a "
    "translation model on a two-core machine and measured everything they claimed, including the "
    "speed of sentence embeddings in batches of thirty-two.",
    "Short one.",
    "The mitochondria is the powerhouse of the cell.",
    "Where is the nearest train station?",
    "I would like a cup of coffee, please.",
    "The database server could not be reached; retrying in 5 seconds.",
    "error: could not compile `tensorbrain` due to 2 previous errors",
    "Translate the following sentence into Italian.",
]


def main():
    torch.set_num_threads(1)
    model = SentenceTransformer(MODEL, device="cpu")
    emb = model.encode(SENTENCES, batch_size=16, convert_to_tensor=True, normalize_embeddings=False)
    # all-MiniLM-L6-v2's pipeline ends in a Normalize module: the output is unit length.
    assert torch.allclose(emb.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-5)
    features = model.tokenize(SENTENCES)
    tensors = {
        "embeddings": emb.float().contiguous(),
        "input_ids": features["input_ids"].to(torch.int64).contiguous(),
        "attention_mask": features["attention_mask"].to(torch.uint8).contiguous(),
    }
    save_file(tensors, OUT, metadata={"sentences": json.dumps(SENTENCES), "torch": torch.__version__})
    print(f"wrote {len(SENTENCES)} sentences to {OUT}")


if __name__ == "__main__":
    main()
