"""Mean squared error on scores scaled to [0, 1].

Mirrors fairseq's ``fairseq/criterions/sentence_prediction.py`` (regression branch):
``forward(model, sample)`` returns ``(loss, sample_size, logging_output)``.
"""
from __future__ import annotations

import torch
from torch import nn

from scorelib.registry import register_criterion


@register_criterion("score_mse")
class ScoreMSECriterion(nn.Module):
    """Sum of squared errors between ``encoder_out`` and ``target`` (both in [0, 1]).

    With K traits (``encoder_out`` (B, K)) each text's error is the mean over its traits, so the loss over
    ``sample_size`` texts is the mean of the per-trait MSEs.
    """

    @classmethod
    def build_criterion(cls, args, task):
        return cls()

    def forward(self, model, sample, reduce: bool = True):
        """Compute the loss of one batch.

        Args:
            model: a module returning ``{"encoder_out": (B,)}`` (or (B, K) with K traits).
            sample (dict): a batch from ``collater``.
            reduce (bool): sum over the batch (else per-item losses).

        Returns:
            tuple: ``loss`` (summed squared error), ``sample_size`` (number of texts, the divisor
            the trainer uses), ``logging_output`` (dict of plain numbers).
        """
        return self.compute_loss(model(**sample["net_input"]), sample, reduce)

    def compute_loss(self, net_output, sample, reduce: bool = True):
        """The loss of a batch whose ``net_output`` is already computed; returns as :meth:`forward`."""
        pred = net_output["encoder_out"].float()
        sample_size = pred.shape[0]  # (B,) for one score, (B, K) for K: each text's error is its scores' mean
        target = sample["target"].to(pred.device, torch.float32).reshape(sample_size, -1)
        per_text = torch.nn.functional.mse_loss(pred.reshape(sample_size, -1), target, reduction="none").mean(-1)
        loss = per_text.sum() if reduce else per_text
        logging_output = {
            "loss": float(loss.detach().sum()),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output
