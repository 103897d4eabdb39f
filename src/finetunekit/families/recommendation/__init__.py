"""Recommendation family: the `Embeddings` backbone (user and item towers), retrieval and ranking."""
