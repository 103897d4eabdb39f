"""Model families: loaders and helpers grouped by kind of model (causal LMs, ...)."""
