"""Several processes, one model (``torchrun``), as ``fairseq/distributed/``; a no-op with one process."""
