"""Causal language models: chat templates, training records, token masks and packing for SFT."""
