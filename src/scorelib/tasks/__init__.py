"""Tasks: what to train on and how (``TextScoringTask``), as ``fairseq/tasks/``."""
