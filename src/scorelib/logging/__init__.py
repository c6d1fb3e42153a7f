"""Logging: the console set-up, per-epoch lines, ``history.csv`` and TensorBoard, as ``fairseq/logging/``."""
