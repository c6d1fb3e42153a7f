"""``scorelib.load(save_dir)``: a trained scorer for new texts (used by the widget and the CLI).

Mirrors fairseq's hub interface (``fairseq/hub_utils.py``: ``from_pretrained`` returning an
object with ``predict``), reading only the save dir: checkpoint, tokenizer, encoder config.
Every text goes through one check (:meth:`Scorer.check`) and one predict loop
(:func:`scorelib.inference.predict`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import checkpoint as C
from .dataset import ScoringDataset, batch_by_size
from .errors import CheckpointError, InputError, MissingFileError
from .inference import predict
from .model import ScoringModel, pick_device
from .prompts import PromptTable

MAX_CHARS = 50_000  # longer inputs are refused (about 12,000 tokens, far beyond any essay)


def _num(x) -> str:
    """A range end or a rounded score without trailing zeros: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{float(x):g}"


def describe(record: dict) -> str:
    """One line for a :meth:`Scorer.record`: ``"3.7 on q2's 1–6 scale (rounded: 4)"`` (``"3.7 ± 0.3 ..."`` with a spread).

    A record of several traits gives one such line per trait, each starting with ``"{trait}: "``.
    """
    if "traits" in record:
        return "\n".join(f"{t}: {describe({'prompt': record['prompt'], **r})}" for t, r in record["traits"].items())
    digits = 1 if record["max"] - record["min"] >= 2 else 2
    spread = f" ± {record['spread']:.{digits}f}" if record.get("spread") is not None else ""
    line = (f"{record['score']:.{digits}f}{spread} on {record['prompt']}'s {_num(record['min'])}–{_num(record['max'])}"
            f" scale")
    if record["score_rounded"] is not None:
        line += f" (rounded: {_num(record['score_rounded'])})"
    return line


class Scorer:
    """Scores texts on a prompt's scale with a trained :class:`ScoringModel`.

    Args:
        model (ScoringModel): in eval mode.
        tokenizer: its tokenizer.
        prompts (PromptTable): ids, ranges, step and stored contexts.
        max_length (int): the encoder's window used in training.
        device (torch.device): where the model lives.
        long_text (str): ``--long-text`` of training (``truncate``, ``head-tail`` or ``chunks``).
        chunk_stride (int | None): ``--chunk-stride`` of training.
    """

    has_spread = False  # a fold ensemble (scorelib.ensemble.EnsembleScorer) also gives a spread

    def __init__(self, model, tokenizer, prompts: PromptTable, max_length: int = 512, device=None,
                 long_text: str = "truncate", chunk_stride: int | None = None):
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.table = prompts
        self.max_length = max_length
        self.long_text, self.chunk_stride = long_text, chunk_stride

    @property
    def traits(self) -> list[str]:
        """The traits this model scores (``[]``: one score per text)."""
        return list(self.table.traits)

    @property
    def prompts(self) -> dict[str, dict]:
        """Prompt id -> ``{"min", "max", "step", "context"}``."""
        return {p: {"min": self.table.ranges[p][0], "max": self.table.ranges[p][1], "step": self.table.step,
                    "context": self.table.contexts.get(p)} for p in self.table.ids}

    def check(self, texts, prompt, contexts) -> tuple[list[str], str, list[str] | None]:
        """The one check of texts to score: returns ``(texts, prompt, contexts)`` or raises :class:`InputError`."""
        prompt = self.table.ids[0] if prompt is None else str(prompt)
        if prompt not in self.table:
            labels = ", ".join(f"{p} ({_num(lo)}–{_num(hi)})" for p, (lo, hi) in
                               ((p, self.table.ranges[p]) for p in self.table.ids))
            raise InputError(f"unknown prompt {prompt!r}: this model knows {labels}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text {i}: expected a string, got {type(text).__name__}")
            if not text.strip():
                raise InputError(f"text {i} is empty: paste a text to score")
            if len(text) > MAX_CHARS:
                raise InputError(f"text {i} has {len(text):,} characters; the scorer takes at most {MAX_CHARS:,}")
        if not self.table.uses_context:
            return list(texts), prompt, None
        if contexts is None:
            stored = self.table.contexts.get(prompt)
            if stored is None:
                raise InputError(f"this model was trained on (text, context) pairs and prompt {prompt!r} has no "
                                 f"stored context: pass contexts=[...] (or --context TEXT)")
            contexts = [stored] * len(texts)
        elif isinstance(contexts, str):
            contexts = [contexts] * len(texts)
        if len(contexts) != len(texts):
            raise InputError(f"got {len(texts)} texts but {len(contexts)} contexts")
        return list(texts), prompt, list(contexts)

    def dataset(self, texts, prompt, contexts=None) -> ScoringDataset:
        """Checked texts of one prompt as an unlabeled :class:`ScoringDataset`."""
        frame = pd.DataFrame({"key": [str(i) for i in range(len(texts))], "prompt": prompt, "text": texts,
                              "context": contexts, "score": np.nan})  # traits: score_matrix gives NaN (N, K)
        return ScoringDataset(frame, self.tokenizer, self.table, self.max_length, long_text=self.long_text,
                              chunk_stride=self.chunk_stride)

    @torch.inference_mode()
    def score01_dataset(self, ds, bf16: bool = False, max_tokens: int = 8192) -> np.ndarray:
        """Scores in [0, 1] (the model's sigmoid output) for every row of a dataset, in its order."""
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
        batches = batch_by_size(ds.ordered_indices(), ds.num_tokens, max_tokens, 256)

        def forward(sample):
            with amp:
                return 0.0, self.model(**sample["net_input"])["encoder_out"]

        return predict(forward, ds, batches, self.device)[1]

    def score(self, texts, prompt=None, contexts=None):
        """Score texts on ``prompt``'s scale (``pred * (max - min) + min``).

        Args:
            texts (str | list[str]): one text or many.
            prompt (str, optional): a prompt id as in the data (default: the first, sorted).
            contexts (str | list[str], optional): second segments, for models trained on pairs
                whose prompt has no stored context.

        Returns:
            float | np.ndarray: the score(s), unrounded, within the prompt's range. With traits
            (:attr:`traits`): for one text a dict ``{trait: score}``, for a list an (N, K) array.
        """
        single = isinstance(texts, str)
        texts, prompt, contexts = self.check([texts] if single else list(texts), prompt, contexts)
        scores = self.table.unscale(self.score01_dataset(self.dataset(texts, prompt, contexts)), [prompt] * len(texts))
        if self.traits and single:
            return dict(zip(self.traits, map(float, scores[0])))
        return float(scores[0]) if single else scores

    def round(self, scores, prompt) -> np.ndarray:
        """Round scores to the prompt's step, clipped to its range (with traits: (N, K) or (K,) -> (N, K))."""
        if self.traits:
            scores = np.reshape(np.asarray(scores, dtype=np.float64), (-1, len(self.traits)))
            return self.table.round(scores, [str(prompt)] * len(scores))
        return self.table.round(np.atleast_1d(scores), [str(prompt)] * np.size(scores))

    def record(self, score, prompt) -> dict:
        """A score with its prompt's range: ``{"prompt", "score", "score_rounded" (None without a step), "min", "max"}``.

        With traits, ``score`` is a dict ``{trait: score}`` or K values, and the record is
        ``{"prompt", "traits": {trait: {"score", "score_rounded", "min", "max"}}}``.
        """
        if self.traits:
            values = [score[t] for t in self.traits] if isinstance(score, dict) else list(np.ravel(score))
            return {"prompt": str(prompt), "traits": {t: score_record(self.table.for_trait(t), v, prompt)
                                                      for t, v in zip(self.traits, values)}}
        return score_record(self.table, score, prompt)


def score_record(table: PromptTable, score: float, prompt) -> dict:
    """One score with its prompt's range and rounded value (see :meth:`Scorer.record`)."""
    lo, hi = table.ranges[str(prompt)]
    rounded = None if table.step is None else float(table.round(np.atleast_1d(score), [str(prompt)])[0])
    return {"prompt": str(prompt), "score": float(score), "score_rounded": rounded, "min": lo, "max": hi}


def resolve_checkpoint(path) -> Path:
    """A save dir -> its ``checkpoint_best.pt`` (else ``checkpoint_last.pt``); a file -> itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
            if (path / name).is_file():
                return path / name
        raise MissingFileError(f"{path}: no checkpoint_best.pt or checkpoint_last.pt in this save dir")
    if not path.exists():
        raise MissingFileError(f"no such save dir or checkpoint: {path}")
    return path


def load(path, device=None) -> Scorer:
    """Load a trained scorer from a save dir (or one checkpoint file inside it).

    Args:
        path (str | Path): ``--save-dir`` of ``scorelib-train``, or a ``.pt`` file in it, or the ``--save-dir``
            of ``scorelib-cv`` (an :class:`scorelib.ensemble.EnsembleScorer` of its fold models).
        device (str | torch.device, optional): default cuda > mps > cpu.

    Returns:
        Scorer: with ``.score(texts, prompt=..., contexts=None)`` and ``.prompts``.
    """
    from .ensemble import is_cv_dir, load_ensemble

    if is_cv_dir(path):  # a scorelib-cv dir: its K fold models, averaged
        return load_ensemble(path, device=device)
    ckpt = resolve_checkpoint(path)
    tokenizer, config, _ = C.load_assets(ckpt.parent)
    state = C.load_checkpoint(ckpt)
    if state["encoder"]["signature"] != C.encoder_signature(config):
        raise CheckpointError(f"{ckpt}: its encoder differs from {ckpt.parent / 'encoder'}")
    cfg = argparse.Namespace(**state["cfg"])
    table = PromptTable.from_dict(state["prompts"])
    model = ScoringModel.from_config(config, num_prompts=len(table), pooling=cfg.pooling, num_outputs=table.num_traits)
    model.load_state_dict(state["model"])
    device = torch.device(device) if device is not None else pick_device()
    return Scorer(model, tokenizer, table, max_length=int(cfg.max_length), device=device,
                  long_text=getattr(cfg, "long_text", "truncate"), chunk_stride=getattr(cfg, "chunk_stride", None))
