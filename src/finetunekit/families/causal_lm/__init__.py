"""Causal language models: loading checkpoints (GGUF) into keras-hub causal LMs."""
