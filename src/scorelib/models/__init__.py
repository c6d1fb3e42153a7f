"""Models: the encoder, the prompt embedding and the sigmoid head (``ScoringModel``), as ``fairseq/models/``."""
