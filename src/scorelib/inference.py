"""One predict loop for training, evaluation and scoring.

Mirrors the inner loop of ``fairseq_cli/validate.py`` (batches of a dataset through
``task.valid_step``): length-sorted batches, each moved to the device and forwarded, the
predictions put back in input order. The trainer (with the loss) and the scorer (without)
both use it.
"""
from __future__ import annotations

import numpy as np
import torch

from scorelib.data.scoring_dataset import batch_by_size


def move_to(sample: dict, device: torch.device) -> dict:
    """A batch with its ``net_input`` and ``target`` tensors on ``device``."""
    net_input = {k: v.to(device, non_blocking=True) for k, v in sample["net_input"].items()}
    return {**sample, "net_input": net_input, "target": sample["target"].to(device)}


def inference_batches(dataset, max_tokens: int, max_sentences: int) -> list[list[int]]:
    """Length-sorted batches over every row of ``dataset`` (no shuffling: prediction order does not matter)."""
    return batch_by_size(dataset.ordered_indices(), dataset.num_tokens, max_tokens, max_sentences)


@torch.no_grad()
def predict(forward, dataset, batches: list[list[int]], device: torch.device) -> tuple[float, np.ndarray]:
    """Run ``forward`` over ``batches`` of ``dataset``.

    Args:
        forward (callable): a batch on ``device`` -> ``(loss: float, encoder_out: Tensor (B,))``.
        dataset (ScoringDataset): the rows.
        batches (list[list[int]]): row indices per batch (e.g. :func:`inference_batches`).
        device (torch.device): where the model is.

    Returns:
        tuple: the summed loss, and predictions (float64, shape ``(len(dataset),)``, or ``(len(dataset), K)``
        with K traits) in input order, NaN for rows in no batch.
    """
    preds = np.full((len(dataset), *np.shape(dataset.targets)[1:]), np.nan)
    loss = 0.0
    for batch in batches:
        sample = move_to(dataset.collater([dataset[i] for i in batch]), device)
        batch_loss, encoder_out = forward(sample)
        loss += batch_loss
        preds[batch] = encoder_out.detach().float().cpu().numpy()
    return loss, preds
