"""``scorelib.load(save_dir)``: a trained scorer for new texts (used by the widget and the CLI).

Mirrors fairseq's hub interface (``fairseq/hub_utils.py``: ``from_pretrained`` returning an object with
``predict``), reading only the save dir: checkpoint, tokenizer, encoder config. Every text goes through one check
(:meth:`Scorer.check`) and one predict loop (:func:`scorelib.inference.predict`). A fold ensemble of ``scorelib-cv``
is a :class:`Scorer` of several models (fairseq averages checkpoints the same way with ``--path a.pt:b.pt``): the
same methods and return shapes, their outputs in [0, 1] averaged, and their spread an extra that every scorer can
return (zero for one model).
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.data.prompts import PromptTable
from scorelib.data.scores import notes_shape
from scorelib.errors import CheckpointError, InputError
from scorelib.hub.ensemble import fold_dirs, is_cv_dir, read_cv_info, resolve_checkpoint, resolve_fold
from scorelib.hub.inputs import prompt_to_use

# PyTorch is imported where a model is built or run: an ONNX export (scorelib.export) scores through this module
# without it

MAX_CHARS = 50_000  # longer inputs are refused (about 12,000 tokens, far beyond any essay)


def fmt_num(x) -> str:
    """A range end or a rounded score without trailing zeros: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{float(x):g}"


def describe(record: dict) -> str:
    """One line for a :meth:`Scorer.record`: ``"3.7 on q2's 1–6 scale (rounded: 4)"`` (``"3.7 ± 0.3 ..."`` with a spread;
    ``"on the 1–6 scale"`` for a model trained without a prompt column; ``"(rounded by the fitted cut-points: 4)"``).

    A record of several traits gives one such line per trait, each starting with ``"{trait}: "``.
    """
    if "traits" in record:
        return "\n".join(f"{t}: {describe({'prompt': record['prompt'], **r})}" for t, r in record["traits"].items())
    digits = 1 if record["max"] - record["min"] >= 2 else 2
    spread = f" ± {record['spread']:.{digits}f}" if record.get("spread") is not None else ""
    scale = "the" if record.get("implicit_prompt") else f"{record['prompt']}'s"  # no prompt column: no name
    line = f"{record['score']:.{digits}f}{spread} on {scale} {fmt_num(record['min'])}–{fmt_num(record['max'])} scale"
    if record["score_rounded"] is not None:
        by = " by the fitted cut-points" if record.get("rounded_by_cutpoints") else ""
        line += f" (rounded{by}: {fmt_num(record['score_rounded'])})"
    return line


def batch_tokens(device_type: str) -> int:
    """Padded tokens per batch when :meth:`Scorer.score` scores new texts: a GPU wants large batches; on a CPU a
    batch whose activations stay in the caches scores faster (on the 2-core CPU: 2,048 tokens 1.5x the texts/s of
    8,192). Evaluating a split keeps 8,192, so that ``scorelib-eval`` reproduces training's figures exactly."""
    return 2048 if device_type == "cpu" else 8192


class Scorer:
    """Scores texts on a prompt's scale with one trained :class:`ScoringModel`, or the mean of several.

    Args:
        model (ScoringModel | list[ScoringModel]): in eval mode; a list of fold models scores as their mean.
        tokenizer: its tokenizer.
        prompts (PromptTable): ids, ranges, step and stored contexts (a fold ensemble: the CV dir's table).
        max_length (int): the encoder's window used in training.
        device (torch.device): where the model lives.
        long_text (str): ``--long-text`` of training (``truncate``, ``head-tail`` or ``chunks``).
        chunk_stride (int | None): ``--chunk-stride`` of training.
        stack (scorelib.stack.blend.Blend, optional): ``--stack tfidf``: the models' TF-IDF stacks and blend weights.
    """

    def __init__(self, model, tokenizer, prompts: PromptTable, max_length: int = 512, device=None,
                 long_text: str = "truncate", chunk_stride: int | None = None, stack=None):
        import torch

        self.device = device or torch.device("cpu")
        self.models = [m.to(self.device).eval() for m in (model if isinstance(model, (list, tuple)) else [model])]
        self.tokenizer = tokenizer
        self.table = prompts
        self.max_length = max_length
        self.long_text, self.chunk_stride = long_text, chunk_stride
        self.cfg: dict = {}  # the training run's options (load() fills them; a CV dir: those of scorelib-cv)
        self.stack = stack

    @property
    def model(self):
        """The model of a single-model scorer (``None`` for a fold ensemble: see :attr:`models`)."""
        return self.models[0] if len(self.models) == 1 else None

    @property
    def num_models(self) -> int:
        """How many models are averaged: 1, or K for the fold ensemble of a ``scorelib-cv`` dir."""
        return len(self.models)

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
        prompt = prompt_to_use(self.table, prompt)  # None: the model's one prompt; of several, none is guessed
        if prompt not in self.table:
            labels = ", ".join(f"{p} ({fmt_num(lo)}–{fmt_num(hi)})" for p, (lo, hi) in
                               ((p, self.table.ranges[p]) for p in self.table.ids))
            raise InputError(f"unknown prompt {prompt!r}: this model knows {labels}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text {i}: expected a string, got {type(text).__name__}")
            if not text.strip():
                raise InputError(f"text {i} is empty: paste a text to score")
            if len(text) > MAX_CHARS:
                raise InputError(f"text {i} has {len(text):,} characters; the scorer takes at most {MAX_CHARS:,}")
            if not text.isprintable() and any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in text):
                raise InputError(f"text {i} holds a NUL or a lone surrogate (bytes that were not UTF-8 text): "
                                 f"not a text to score")
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

    def dataset(self, texts, prompt, contexts=None):
        """Checked texts of one prompt as an unlabeled :class:`~scorelib.data.scoring_dataset.ScoringDataset`."""
        from scorelib.data.long_text import build_dataset

        frame = pd.DataFrame({"key": [str(i) for i in range(len(texts))], "prompt": prompt, "text": texts,
                              "context": contexts, "score": np.nan})  # traits: score_matrix gives NaN (N, K)
        return build_dataset(frame, self.tokenizer, self.table, self.max_length, long_text=self.long_text,
                             chunk_stride=self.chunk_stride)

    def models_scores01(self, ds, bf16: bool = False, max_tokens: int = 8192) -> np.ndarray:
        """Each model's scores in [0, 1] for every row of a dataset, in its order: its sigmoid output, or with
        ``--stack tfidf`` its blend with its stack.

        Returns:
            np.ndarray: (M, N), or (M, N, K) for K traits; M is :attr:`num_models`.
        """
        parts = self.models_parts01(ds, bf16, max_tokens)
        return parts.get("blend", parts["encoder"])

    def models_parts01(self, ds, bf16: bool = False, max_tokens: int = 8192) -> dict[str, np.ndarray]:
        """:meth:`models_scores01`'s parts: ``{"encoder"}``, and with a stack also ``"stack"`` and ``"blend"``."""
        import torch

        from scorelib.data.scoring_dataset import batch_by_size
        from scorelib.inference import predict

        amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
        batches = batch_by_size(ds.ordered_indices(), ds.num_tokens, max_tokens, 256)

        def run(model):
            def forward(sample):
                with amp, torch.inference_mode():
                    return 0.0, model(**sample["net_input"])["encoder_out"]
            return predict(forward, ds, batches, self.device)[1]

        encoder = np.stack([run(m) for m in self.models])
        parts = {"encoder": encoder} if self.stack is None else self.stack.parts01(ds.texts, encoder)
        for name, values in parts.items():  # a score that is not a number is never printed or written
            if not np.all(np.isfinite(values)):
                raise CheckpointError(f"the model's {name} part gave {int(np.sum(~np.isfinite(values)))} non-finite "
                                      f"score(s) (NaN or inf): its checkpoint or stack is damaged")
        return parts

    def score01_dataset(self, ds, bf16: bool = False, max_tokens: int = 8192) -> np.ndarray:
        """Scores in [0, 1] for every row of a dataset (the models' mean): (N,), or (N, K) for K traits."""
        return self.models_scores01(ds, bf16, max_tokens).mean(axis=0)

    def score(self, texts, prompt=None, contexts=None, return_spread: bool = False):
        """Score texts on ``prompt``'s scale (``pred * (max - min) + min``).

        Args:
            texts (str | list[str]): one text or many.
            prompt (str, optional): a prompt id as in the data (needed where the model knows several).
            contexts (str | list[str], optional): second segments, for models trained on pairs
                whose prompt has no stored context.
            return_spread (bool): also return the spread: the standard deviation (``ddof=0``) of the models'
                scores on the prompt's scale (0 for a single model).

        Returns:
            float | np.ndarray, or a tuple ``(score, spread)``: the score(s), unrounded, within the prompt's range.
            With traits (:attr:`traits`): for one text a dict ``{trait: score}``, for a list an (N, K) array.
        """
        single = isinstance(texts, str)
        if not single and (texts is None or isinstance(texts, (Mapping, bytes)) or not hasattr(texts, "__iter__")):
            raise InputError(f"texts: expected a string or a list of strings, got {type(texts).__name__}")
        texts = [texts] if single else list(texts)
        if not texts:
            raise InputError("texts: an empty list; pass at least one text to score")
        out = self.predict(texts, prompt, contexts)
        scores, spread = out["pred"], out["spread"]
        if single:
            scores, spread = (self.table.scores.pack(map(float, np.ravel(x[0]))) for x in (scores, spread))
        return (scores, spread) if return_spread else scores

    def predict(self, texts: list, prompt=None, contexts=None) -> dict[str, np.ndarray]:
        """:meth:`score`'s figures for a list of texts, on the prompt's scale, each (N,) or (N, K): ``"pred"`` (the
        score used), ``"spread"``, and for a ``--stack tfidf`` scorer its parts ``"encoder"`` and ``"stack"``."""
        texts, prompt, contexts = self.check(texts, prompt, contexts)
        # each (M, N) or (M, N, K); a split's evaluation keeps 8,192 (its figures equal training's, batch for batch)
        device = getattr(self.device, "type", self.device)  # an ONNX export's scorer names its device "cpu"
        parts = self.models_parts01(self.dataset(texts, prompt, contexts), max_tokens=batch_tokens(device))
        each, prompts = parts.get("blend", parts["encoder"]), [prompt] * len(texts)
        zero = self.table.unscale(np.zeros_like(each[0]), prompts)
        out = {"pred": self.table.unscale(each.mean(axis=0), prompts),
               "spread": self.table.unscale(each.std(axis=0), prompts) - zero}
        if "blend" in parts:
            out.update({k: self.table.unscale(parts[k].mean(axis=0), prompts) for k in ("encoder", "stack")})
        return out

    def round(self, scores, prompt) -> np.ndarray:
        """Round scores to the prompt's step (or fitted cut-points), clipped to its range: (N,), or (N, K) with traits."""
        matrix = np.reshape(np.asarray(scores, dtype=np.float64), (-1, self.table.num_traits))
        return notes_shape(self.table.round(matrix, [str(prompt)] * len(matrix)))

    def record(self, score, prompt, spread=None) -> dict:
        """A score with its prompt's range: ``{"prompt", "score", "score_rounded" (None without a step), "min", "max"}``,
        plus ``"spread"`` for a scorer of several models, ``"rounded_by_cutpoints": True`` where the prompt rounds by
        fitted cut-points and ``"implicit_prompt": True`` for a model trained on a table without a prompt column.

        With traits, ``score`` (and ``spread``) is a dict ``{trait: value}`` or K values, and the record is
        ``{"prompt", "traits": {trait: {"prompt", "score", "score_rounded", "min", "max"}}}``.
        """
        values = self.table.scores.unpack(score)
        spreads = self.table.scores.unpack(spread) if spread is not None else [None] * len(values)
        extra = [{"spread": None if s is None else float(s)} if self.num_models > 1 else {} for s in spreads]
        records = [score_record(view, v, prompt, **x) for view, v, x in zip(self.table.views.values(), values, extra)]
        return self.table.scores.pack(records, lambda each: {"prompt": str(prompt), "traits": each})

    def output_columns(self, values: dict, prompts) -> dict[str, np.ndarray]:
        """The columns ``scorelib-score --input`` adds to a table: ``pred``, ``pred_rounded`` (per trait:
        ``pred_{t}``, ``pred_rounded_{t}``), for a scorer of several models ``spread`` (``spread_{t}``), and for a
        ``--stack tfidf`` scorer its parts ``pred_encoder`` and ``pred_stack`` (``pred`` is their blend).

        Args:
            values (dict): :meth:`predict`'s arrays for every row, (N,) or (N, K) on the prompts' scales.
            prompts (Sequence[str]): prompt id per row.
        """
        k, names = self.table.num_traits, self.table.scores
        values = {key: np.reshape(np.asarray(x, dtype=np.float64), (-1, k)) for key, x in values.items()}
        named = {"pred": values["pred"], "pred_rounded": self.table.round(values["pred"], list(prompts))}
        named.update({f"pred_{part}": values[part] for part in ("encoder", "stack") if part in values})
        cols = {names.suffixed(base)[i]: x[:, i] for i in range(k) for base, x in named.items()}  # trait by trait
        return {**cols, **dict(zip(names.suffixed("spread"), values["spread"].T))} if self.num_models > 1 else cols


def score_record(table: PromptTable, score: float, prompt, **extra) -> dict:
    """One score with its prompt's range and rounded value (see :meth:`Scorer.record`)."""
    lo, hi = table.ranges[str(prompt)]
    rounded = None if table.step is None else float(table.round(np.atleast_1d(score), [str(prompt)])[0])
    flags = {"rounded_by_cutpoints": True} if rounded is not None and str(prompt) in table.cutpoints else {}
    flags.update({"implicit_prompt": True} if table.implicit_prompt else {})
    return {"prompt": str(prompt), "score": float(score), "score_rounded": rounded, "min": lo, "max": hi, **flags,
            **extra}


# the options that loading a checkpoint uses, beyond the numbers in options.RANGES
LOAD_CHOICES = ("pooling", "long_text", "stack")


def check_cfg(cfg: dict, path) -> None:
    """The options a scorer is built from, as their flags allow (``max_length``, ``chunk_stride`` in their
    :data:`scorelib.options.RANGES`; ``pooling``, ``long_text``, ``stack`` among their choices)."""
    from scorelib.options import RANGES, get_training_parser

    choices = {a.dest: a.choices for a in get_training_parser([], fast=False)._actions if a.dest in LOAD_CHOICES}
    for r in RANGES:
        value = cfg.get(r.dest)
        if r.dest in ("max_length", "chunk_stride") and value is not None and \
                (type(value) is not int or not r.holds(value)):
            raise CheckpointError(f"{path}: its options hold {r.dest} {value!r}, and --{r.dest.replace('_', '-')} "
                                  f"must be {r.rule}; the file was edited or damaged")
    for dest, allowed in choices.items():
        if cfg.get(dest) is not None and allowed and cfg[dest] not in allowed:
            raise CheckpointError(f"{path}: its options hold {dest} {cfg[dest]!r}, not one of {', '.join(allowed)}; "
                                  f"the file was edited or damaged")



def load_model(ckpt: Path):
    """A checkpoint's model, tokenizer, prompt table and options (missing ones filled by :func:`checkpoint_utils.load_checkpoint`)."""
    from scorelib import checkpoint_utils
    from scorelib.models.scoring_model import ScoringModel

    tokenizer, config, _ = checkpoint_utils.load_assets(ckpt.parent)
    state = checkpoint_utils.load_checkpoint(ckpt)
    check_cfg(state["cfg"], ckpt)
    if state["encoder"]["signature"] != checkpoint_utils.encoder_signature(config):
        raise CheckpointError(f"{ckpt}: its encoder differs from {ckpt.parent / 'encoder'}")
    cfg = argparse.Namespace(**state["cfg"])
    table = PromptTable.from_dict(state["prompts"])
    model = ScoringModel.from_config(config, num_prompts=len(table), pooling=cfg.pooling, num_outputs=table.num_traits)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:  # a weight of another shape, or missing: the prompts or traits were edited
        raise CheckpointError(f"{ckpt}: its weights do not fit its {len(table)} prompt(s) and "
                              f"{table.num_traits} score(s): {' '.join(str(e).split())[:300]}") from None
    return model, tokenizer, table, cfg


def load(path, device=None) -> Scorer:
    """Load a trained scorer from a save dir (or one checkpoint file inside it), or a fold ensemble.

    Args:
        path (str | Path): ``--save-dir`` of ``scorelib-train``, or a ``.pt`` file in it, or the ``--save-dir``
            of ``scorelib-cv`` (its K fold models, averaged; the CV dir's prompt table and cut-points), or the
            folder of ``scorelib-export`` (scored by onnxruntime on the CPU, without PyTorch).
        device (str | torch.device, optional): default cuda > mps > cpu.

    Returns:
        Scorer: with ``.score(texts, prompt=..., contexts=None, return_spread=False)`` and ``.prompts``.
    """
    from scorelib.export.runtime import is_export, load_export

    if is_export(path):  # scorelib-export's folder: the same Scorer, its models ONNX sessions
        return load_export(path, Scorer)
    import torch

    from scorelib.models.scoring_model import pick_device

    device = torch.device(device) if device is not None else pick_device()
    ckpts = [resolve_fold(f) for f in fold_dirs(path)] if is_cv_dir(path) else [resolve_checkpoint(path)]
    loaded = [load_model(c) for c in ckpts]
    model, tokenizer, table, cfg = loaded[0]
    if is_cv_dir(path):
        table = PromptTable.load(Path(path) / "prompts.json") if (Path(path) / "prompts.json").is_file() else table
        if any(t.ids != table.ids for _, _, t, _ in loaded):
            raise CheckpointError(f"{path}: the folds' prompts differ; they are not one cross-validation run")
        same_scales(path, table, [(c, t) for c, (_, _, t, _) in zip(ckpts, loaded)])
    scorer = Scorer([m for m, *_ in loaded], tokenizer, table, max_length=int(cfg.max_length), device=device,
                    long_text=cfg.long_text, chunk_stride=cfg.chunk_stride, stack=load_stack(path, ckpts, cfg))
    info = read_cv_info(path) if is_cv_dir(path) else None
    scorer.cfg = info["args"] if info else vars(cfg)
    return scorer


SCALE_KEYS = ("ids", "ranges", "step", "traits", "trait_ranges", "trait_steps")


def same_scales(path, table: PromptTable, folds: list) -> None:
    """A CV dir's ``prompts.json`` on the scales its folds' checkpoints were trained on (its cut-points may differ:
    they are fitted on every row); an edited range would put every score on another scale."""
    mine = {k: table.to_dict().get(k) for k in SCALE_KEYS}
    for ckpt, fold in folds:
        theirs = {k: fold.to_dict().get(k) for k in SCALE_KEYS}
        diff = next((k for k in SCALE_KEYS if mine[k] != theirs[k]), None)
        if diff:
            raise CheckpointError(f"{Path(path) / 'prompts.json'}: its {diff} {mine[diff]} differ from those "
                                  f"{ckpt} was trained on ({theirs[diff]}); the file was edited: restore it")


def load_stack(path, ckpts: list[Path], cfg):
    """``--stack tfidf``: the models' stacks and blend weights (:func:`scorelib.stack.blend.load_blend`); else None."""
    if not cfg.stack:
        return None
    from scorelib.stack.blend import load_blend

    return load_blend(path, [c.parent for c in ckpts], is_cv_dir(path))
