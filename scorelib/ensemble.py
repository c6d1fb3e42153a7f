"""Fold ensembles: the K models of a ``scorelib-cv`` dir scoring as one.

fairseq averages several checkpoints' outputs with ``--path a.pt:b.pt`` (``EnsembleModel`` in
``fairseq/sequence_generator.py``); here each fold's model scores the texts, their outputs in
[0, 1] are averaged, and the spread (standard deviation across folds, on the prompt's scale) is
kept as a rough sign of how sure the ensemble is. :class:`EnsembleScorer` has the interface of
:class:`scorelib.scorer.Scorer`, so the widget and the command-line tools take either.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .prompts import PromptTable
from .scorer import Scorer, load


def is_cv_dir(path) -> bool:
    """True for a ``scorelib-cv`` dir: a folder holding ``fold0/`` and no checkpoint of its own."""
    path = Path(path)
    return path.is_dir() and (path / "fold0").is_dir() and not (path / "checkpoint_best.pt").is_file() \
        and not (path / "checkpoint_last.pt").is_file()


def fold_dirs(path) -> list[Path]:
    """``DIR/fold0 .. DIR/fold{K-1}``, K from ``DIR/cv.json`` (else the ``fold*`` folders found)."""
    path = Path(path)
    info = path / "cv.json"
    k = json.loads(info.read_text(encoding="utf-8"))["folds"] if info.is_file() else \
        len([p for p in path.glob("fold*") if p.is_dir()])
    return [path / f"fold{i}" for i in range(k)]


class EnsembleScorer(Scorer):
    """Averages the fold models' outputs in [0, 1]; ``score(..., return_spread=True)`` adds their spread.

    Args:
        scorers (list[Scorer]): one per fold, sharing tokenizer and prompts.
        prompts (PromptTable): the CV dir's table (shared ranges; cut-points fitted on out-of-fold predictions).
    """

    has_spread = True

    def __init__(self, scorers: list[Scorer], prompts: PromptTable):
        first = scorers[0]
        self.scorers, self.device, self.model = scorers, first.device, None
        self.tokenizer, self.table, self.max_length = first.tokenizer, prompts, first.max_length
        self.long_text, self.chunk_stride = first.long_text, first.chunk_stride  # the folds share their options

    def fold_scores01(self, ds, bf16: bool = False, max_tokens: int = 8192) -> np.ndarray:
        """Each fold's outputs in [0, 1]: shape (K, N)."""
        return np.stack([s.score01_dataset(ds, bf16=bf16, max_tokens=max_tokens) for s in self.scorers])

    def score01_dataset(self, ds, bf16: bool = False, max_tokens: int = 8192) -> np.ndarray:
        """The fold models' mean output in [0, 1] for every row of a dataset."""
        return self.fold_scores01(ds, bf16, max_tokens).mean(axis=0)

    def score(self, texts, prompt=None, contexts=None, return_spread: bool = False):
        """Mean of the fold models' scores on ``prompt``'s scale; with ``return_spread``, also their spread.

        Returns:
            float | np.ndarray, or a tuple ``(score, spread)``: the spread is the standard deviation
            (``ddof=0``) across the K fold models, on the prompt's scale. With traits, as
            :meth:`Scorer.score`: a dict ``{trait: value}`` for one text, (N, K) arrays for a list.
        """
        single = isinstance(texts, str)
        texts, prompt, contexts = self.check([texts] if single else list(texts), prompt, contexts)
        each = self.fold_scores01(self.dataset(texts, prompt, contexts))  # (K folds, N) or (K folds, N, traits)
        prompts = [prompt] * len(texts)
        scores = self.table.unscale(each.mean(axis=0), prompts)
        spread = self.table.unscale(each.std(axis=0), prompts) - self.table.unscale(np.zeros_like(each[0]), prompts)
        if single and self.traits:
            scores, spread = dict(zip(self.traits, map(float, scores[0]))), dict(zip(self.traits, map(float, spread[0])))
        elif single:
            scores, spread = float(scores[0]), float(spread[0])
        return (scores, spread) if return_spread else scores

    def record(self, score, prompt, spread=None) -> dict:
        """:meth:`Scorer.record` plus ``"spread"`` (with traits: in each trait's record)."""
        out = super().record(score, prompt)
        if "traits" in out:
            values = [None] * len(self.traits) if spread is None else \
                [spread[t] for t in self.traits] if isinstance(spread, dict) else list(np.ravel(spread))
            for t, v in zip(self.traits, values):
                out["traits"][t]["spread"] = None if v is None else float(v)
            return out
        return {**out, "spread": None if spread is None else float(spread)}


def load_ensemble(path, device=None) -> EnsembleScorer:
    """Load every fold of a ``scorelib-cv`` dir as one :class:`EnsembleScorer`."""
    path = Path(path)
    scorers = []
    for fold in fold_dirs(path):
        if not ((fold / "checkpoint_best.pt").is_file() or (fold / "checkpoint_last.pt").is_file()):
            raise CheckpointError(f"{fold}: no checkpoint; this cross-validation has not finished "
                                  f"(re-run scorelib-cv with the same options to finish it)")
        scorers.append(load(fold, device=device))
    table = PromptTable.load(path / "prompts.json") if (path / "prompts.json").is_file() else scorers[0].table
    if any(s.table.ids != table.ids for s in scorers):
        raise CheckpointError(f"{path}: the folds' prompts differ; they are not one cross-validation run")
    return EnsembleScorer(scorers, table)
