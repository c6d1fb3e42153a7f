"""The optimizer: AdamW, its parameter groups, mixed precision, as ``fairseq/optim/``."""
