"""Vector family: your own Keras model on feature vectors, and behaviour cloning (`fk.rl`)."""
