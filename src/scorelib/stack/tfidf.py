"""``--stack tfidf``: a word + character n-gram TF-IDF ridge per score, blended with the encoder.

No fairseq counterpart; the "blend different model families" step of the Feedback Prize solutions. Fitted
with scikit-learn (``TfidfVectorizer``, ``Ridge``) on the train split, its ``alpha`` picked on valid; the blend
``w * encoder + (1 - w) * stack`` takes, per score, the ``w`` in [0, 1] that minimises the squared error on valid
(on the out-of-fold predictions under ``scorelib-cv``), so on that data the blend is never worse than the better
of its two parts. Saved in ``SAVE_DIR/stack/`` without pickle: ``stack.json`` (settings, vocabularies, alphas,
weights) and ``arrays.npz`` (idf, coefficients; read with ``allow_pickle=False``). The core reaches this module
only through small hooks (training, evaluation, the scorer, cross-validation).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from scorelib import checkpoint_utils
from scorelib.data.scores import as_matrix
from scorelib.distributed import utils as dist
from scorelib.errors import OptionError
from scorelib.results import frame_metrics, results_frame, write_dataset_results, write_results
from scorelib.stack.blend import FORMAT, PARTS, STACK_DIR, TfidfStack, fit_weight, load_blend
from scorelib.training import AfterTraining
from scorelib.writers import atomic_write

logger = logging.getLogger(__name__)


def fit_for_run(save_dir, train_ds, valid_ds, valid_encoder01, table) -> TfidfStack:
    """``scorelib-train --stack tfidf``: fit on train, pick alpha and the blend weight on valid, save it.

    Args:
        save_dir (Path): the stack goes to ``save_dir/stack``; train_ds, valid_ds (ScoringDataset): texts, targets.
        valid_encoder01 (np.ndarray): checkpoint_best's valid predictions in [0, 1], (N,) or (N, K).
        table (PromptTable): errors are weighed on the prompts' scales.
    """
    stack = TfidfStack.fit(train_ds.texts, train_ds.targets, valid_ds.texts, valid_ds.targets)
    k = table.num_traits
    on_scale = [as_matrix(table.unscale(x.reshape(np.shape(valid_encoder01)), valid_ds.prompts), k)
                for x in (as_matrix(valid_encoder01, k), stack.predict01(valid_ds.texts))]
    stack.weight = fit_weight(*on_scale, as_matrix(valid_ds.scores, k))
    stack.save(Path(save_dir) / STACK_DIR)
    logger.info("--stack tfidf: ridge alpha %s, encoder weight %s (fitted on valid)", stack.alphas,
                np.round(stack.weight, 3).tolist())
    return stack


def run_parts(save_dir, ds, encoder01) -> dict:
    """A save dir's parts for a dataset: ``{"encoder", "stack", "blend"}`` in [0, 1], shaped as ``encoder01``,
    and ``"weight"``."""
    blend = load_blend(save_dir, [save_dir], cross_validated=False)
    return {**{k: v[0] for k, v in blend.parts01(ds.texts, np.asarray(encoder01)[None]).items()},
            "weight": blend.weight}


def write_scorer_results(scorer, ds, bf16, results_path, ckpt_name, split) -> dict:
    """``scorelib-eval``: result files of one split scored by ``scorer`` (a stacked one: the blend and its parts)."""
    if scorer.stack is None:
        return write_dataset_results(ds, scorer.score01_dataset(ds, bf16=bf16), scorer.table, results_path, ckpt_name,
                                split)[1]
    parts = {k: v.mean(axis=0) for k, v in scorer.models_parts01(ds, bf16).items()}
    return write_blend_results(ds, parts, scorer.table, results_path, ckpt_name, split, scorer.stack.weight)[1]


def add_parts(frame, metrics: dict, parts01: dict, table, weight=None) -> None:
    """Add the encoder's and the stack's predictions to a result frame (``pred_encoder``, ``pred_stack``; per trait
    ``pred_encoder_{t}``...) before ``text``, and their metrics to ``metrics`` (``"encoder"``, ``"stack"``)."""
    prompts = frame["prompt"].tolist()
    pred_cols, rounded_cols = table.scores.suffixed("pred"), table.scores.suffixed("pred_rounded")
    for part in PARTS:
        pred = as_matrix(table.unscale(parts01[part], prompts), table.num_traits)
        view = frame.copy()
        view[pred_cols], view[rounded_cols] = pred, table.round(pred, prompts)
        metrics[part] = frame_metrics(view, table)
        for i, name in enumerate(table.scores.suffixed(f"pred_{part}")):
            frame.insert(frame.columns.get_loc("text"), name, pred[:, i])
    if weight is not None:
        metrics["blend_weight"] = dict(zip(table.scores.names, np.asarray(weight, dtype=np.float64).tolist()))


def write_blend_results(ds, parts01: dict, table, results_path, ckpt_name, split, weight=None):
    """Result files of a stacked model: ``pred`` the blend, plus both parts' columns and metrics."""
    frame = results_frame(ds.keys, ds.prompts, ds.scores, parts01["blend"], ds.texts, table)
    metrics = frame_metrics(frame, table)
    add_parts(frame, metrics, parts01, table, weight)
    write_results(frame, metrics, table, results_path, ckpt_name, split)
    return frame, metrics


def cv_blend(save_dir, rows, gold, prompts, table) -> dict:
    """``scorelib-cv --stack tfidf``: the blend weight fitted on the out-of-fold predictions (``rows``: the folds'
    ``oof.csv`` rows in the data's order, with ``pred01_encoder``, ``pred01_stack``), saved in
    ``save_dir/stack/blend.json``; returns the parts, their ``"blend"`` ((N, K) in [0, 1]) and ``"weight"``."""
    k = table.num_traits
    enc, stack = (rows[table.scores.suffixed(f"pred01_{p}")].to_numpy(np.float64) for p in PARTS)
    weight = fit_weight(*(as_matrix(table.unscale(x, prompts), k) for x in (enc, stack)), as_matrix(gold, k))
    text = json.dumps({"format": FORMAT, "weight": weight.tolist(), "fitted_on": "out-of-fold predictions"})
    (Path(save_dir) / STACK_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(save_dir) / STACK_DIR / "blend.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    logger.info("--stack tfidf: encoder weight %s (fitted on the out-of-fold predictions)", weight.round(3).tolist())
    return {"encoder": enc, "stack": stack, "blend": weight * enc + (1 - weight) * stack, "weight": weight}


class StackStep(AfterTraining):
    """``scorelib-train --stack tfidf``, once the epoch loop has ended: fit the stack and its blend weight on
    ``checkpoint_best``'s valid predictions (:func:`fit_for_run`), then write result files of the blend and both
    parts (:func:`write_blend_results`) in place of the encoder's."""

    def check(self, task) -> None:
        if not ("valid" in task.frames and len(task.frames["valid"]) > 0):
            raise OptionError("--stack tfidf needs a valid split: its ridge penalty and blend weight are fitted there")

    def run(self, trainer, best: Path) -> None:
        """Every process predicts the valid split; the first fits and saves."""
        trainer.model.load_state_dict(checkpoint_utils.load_checkpoint(best)["model"])
        _, preds = trainer.valid_step(trainer.valid_data)
        if trainer.world.is_main:
            fit_for_run(best.parent, trainer.train_data, trainer.valid_data, preds, trainer.task.prompts)
        dist.barrier(trainer.world)

    def blend01(self, best: Path, ds, preds01) -> np.ndarray:
        """The blend of ``preds01`` (the encoder's, in [0, 1]) with the saved stack."""
        return run_parts(best.parent, ds, preds01)["blend"]

    def write_split(self, trainer, best: Path, ds, preds01, results_path: Path, split: str) -> dict:
        parts = run_parts(best.parent, ds, preds01)
        return write_blend_results(ds, parts, trainer.task.prompts, results_path, best.name, split, parts["weight"])[1]
