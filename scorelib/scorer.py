"""``scorelib.load(save_dir)``: a trained scorer for new texts (used by the widget and the CLI).

Mirrors fairseq's hub interface (``fairseq/hub_utils.py``: ``from_pretrained`` returning an
object with ``predict``), reading only the save dir: checkpoint, tokenizer, encoder config.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as C
from .data import batch_by_size, collate, tokenize
from .model import ScoringModel, pick_device
from .prompts import PromptTable

MAX_CHARS = 50_000  # longer inputs are refused: the model reads at most --max-length tokens anyway


class Scorer:
    """Scores texts on a prompt's scale with a trained :class:`ScoringModel`.

    Args:
        model (ScoringModel): in eval mode.
        tokenizer: its tokenizer.
        prompts (PromptTable): ids, ranges, step and stored contexts.
        max_length (int): truncation length used in training.
        device (torch.device): where the model lives.
    """

    def __init__(self, model, tokenizer, prompts: PromptTable, max_length: int = 512, device=None):
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.table = prompts
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id or 0

    @property
    def prompts(self) -> dict[str, dict]:
        """Prompt id -> ``{"min", "max", "step", "context"}``."""
        return {p: {"min": self.table.ranges[p][0], "max": self.table.ranges[p][1], "step": self.table.step,
                    "context": self.table.contexts.get(p)} for p in self.table.ids}

    def check(self, texts, prompt, contexts):
        """Validate inputs; returns ``(texts, prompt, contexts)`` or raises ``ValueError``/``KeyError``."""
        if prompt is None:
            prompt = self.table.ids[0]
        prompt = str(prompt)
        self.table.index(prompt)  # unknown prompt: KeyError listing the known ones
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i}: expected a string, got {type(text).__name__}")
            if not text.strip():
                raise ValueError(f"text {i} is empty: paste an answer to score")
            if len(text) > MAX_CHARS:
                raise ValueError(f"text {i} has {len(text):,} characters; the scorer takes at most {MAX_CHARS:,} "
                                 f"(the model reads only the first {self.max_length} tokens)")
        if self.table.uses_context:
            if contexts is None:
                stored = self.table.contexts.get(prompt)
                if stored is None:
                    raise ValueError(f"this model was trained on (text, context) pairs and prompt {prompt!r} has no "
                                     f"stored context: pass contexts=[...] (or --context TEXT)")
                contexts = [stored] * len(texts)
            elif isinstance(contexts, str):
                contexts = [contexts] * len(texts)
            if len(contexts) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(contexts)} contexts")
        else:
            contexts = None
        return list(texts), prompt, contexts

    def score01(self, texts, prompt, contexts=None) -> np.ndarray:
        """Scores in [0, 1] (the model's sigmoid output) for texts already checked."""
        enc = tokenize(self.tokenizer, texts, contexts, self.max_length)
        pid = self.table.index(prompt)
        items = [{"id": i, "key": "", "prompt": prompt, "text": "", "prompt_id": pid, "target": 0.0,
                  **{k: torch.tensor(v[i]) for k, v in enc.items()}} for i in range(len(texts))]
        return self.predict(items)

    def score01_dataset(self, ds, bf16: bool = False) -> np.ndarray:
        """Scores in [0, 1] for every row of a :class:`ScoringDataset`, in its order."""
        return self.predict([ds[i] for i in range(len(ds))], bf16=bf16)

    @torch.inference_mode()
    def predict(self, items: list[dict], max_tokens: int = 8192, bf16: bool = False) -> np.ndarray:
        """Forward dataset items in length-sorted batches; returns scores in [0, 1] in input order."""
        sizes = np.array([len(x["input_ids"]) for x in items])
        out = np.empty(len(items), dtype=np.float64)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
        for batch in batch_by_size(np.argsort(sizes, kind="stable"), sizes.__getitem__, max_tokens, 256):
            net_input = collate([items[i] for i in batch], self.pad_id)["net_input"]
            net_input = {k: v.to(self.device) for k, v in net_input.items()}
            with amp:
                out[batch] = self.model(**net_input)["encoder_out"].float().cpu().numpy()
        return out

    def score(self, texts, prompt=None, contexts=None):
        """Score texts on ``prompt``'s scale (``pred * (max - min) + min``).

        Args:
            texts (str | list[str]): one text or many.
            prompt (str, optional): a prompt id as in the data (default: the first, sorted).
            contexts (str | list[str], optional): second segments, for models trained on pairs
                whose prompt has no stored context.

        Returns:
            float | np.ndarray: the score(s), unrounded, within the prompt's range.
        """
        single = isinstance(texts, str)
        texts, prompt, contexts = self.check([texts] if single else list(texts), prompt, contexts)
        scores = self.table.unscale(self.score01(texts, prompt, contexts), [prompt] * len(texts))
        return float(scores[0]) if single else scores

    def round(self, scores, prompt):
        """Round scores to the prompt's step, clipped to its range."""
        return self.table.round(np.atleast_1d(scores), [str(prompt)] * np.size(scores))


def resolve_checkpoint(path) -> Path:
    """A save dir -> its ``checkpoint_best.pt`` (else ``checkpoint_last.pt``); a file -> itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path}: no checkpoint_best.pt or checkpoint_last.pt in this save dir")
    if not path.exists():
        raise FileNotFoundError(f"no such save dir or checkpoint: {path}")
    return path


def load(path, device=None) -> Scorer:
    """Load a trained scorer from a save dir (or one checkpoint file inside it).

    Args:
        path (str | Path): ``--save-dir`` of ``scorelib-train``, or a ``.pt`` file in it.
        device (str | torch.device, optional): default cuda > mps > cpu.

    Returns:
        Scorer: with ``.score(texts, prompt=..., contexts=None)`` and ``.prompts``.
    """
    ckpt = resolve_checkpoint(path)
    tokenizer, config, _ = C.load_assets(ckpt.parent)
    state = C.load_checkpoint(ckpt)
    if state["encoder"]["signature"] != C.encoder_signature(config):
        raise C.CheckpointError(f"{ckpt}: its encoder differs from {ckpt.parent / 'encoder'}")
    cfg = argparse.Namespace(**state["cfg"])
    table = PromptTable.from_dict(state["prompts"])
    model = ScoringModel.from_config(cfg, config, num_prompts=len(table))
    model.load_state_dict(state["model"])
    device = torch.device(device) if device is not None else pick_device()
    return Scorer(model, tokenizer, table, max_length=int(getattr(cfg, "max_length", 512)), device=device)
