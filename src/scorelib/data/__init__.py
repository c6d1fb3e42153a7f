"""Data: reading the user's tables, the prompt table, the datasets and their batches, as ``fairseq/data/``."""
