"""Criterions: the loss, returning ``(loss, sample_size, logging_output)``, as ``fairseq/criterions/``."""
