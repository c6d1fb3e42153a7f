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
import zipfile
from pathlib import Path

import numpy as np

from scorelib import checkpoint_utils
from scorelib.data.scores import as_matrix
from scorelib.distributed import utils as dist
from scorelib.errors import CheckpointError, OptionError
from scorelib.results import frame_metrics, results_frame, write_dataset_results, write_results
from scorelib.training import AfterTraining
from scorelib.writers import atomic_write

logger = logging.getLogger(__name__)
STACK_DIR = "stack"
FORMAT = 1
ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0)
VECTORIZERS = {  # word 1-2 and character 2-5 n-grams, sublinear tf
    "word": {"analyzer": "word", "ngram_range": [1, 2], "sublinear_tf": True, "min_df": 2, "max_features": 100_000},
    "char": {"analyzer": "char", "ngram_range": [2, 5], "sublinear_tf": True, "min_df": 2,
             "max_features": 200_000},
}
PARTS = ("encoder", "stack")


def vectorizer(settings: dict, vocabulary=None):
    """A ``TfidfVectorizer`` of ``settings`` (a :data:`VECTORIZERS` entry), over a fixed ``vocabulary`` if given."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    kwargs = {k: settings[k] for k in ("analyzer", "sublinear_tf")}
    kwargs["ngram_range"] = tuple(settings["ngram_range"])
    if vocabulary is None:
        kwargs.update(min_df=settings["min_df"], max_features=settings["max_features"])
    return TfidfVectorizer(**kwargs, vocabulary=vocabulary, dtype=np.float64)


def fit_weight(encoder, stack, gold) -> np.ndarray:
    """Per score, the ``w`` in [0, 1] minimising ``sum((w * e + (1 - w) * s - g) ** 2)`` over the labelled rows
    (closed form, clipped: the error is a parabola in ``w``); 1 where the two parts agree everywhere.

    Args:
        encoder, stack, gold (array-like, (N, K)): on the prompts' scales (or all in [0, 1]).

    Returns:
        np.ndarray: (K,).
    """
    e, s, g = (np.asarray(x, dtype=np.float64) for x in (encoder, stack, gold))
    weight = np.ones(e.shape[1])
    for k in range(e.shape[1]):
        ok = np.isfinite(g[:, k])
        d = e[ok, k] - s[ok, k]
        if float(d @ d) > 0:
            weight[k] = float(np.clip(d @ (g[ok, k] - s[ok, k]) / (d @ d), 0.0, 1.0))
    return weight


class TfidfStack:
    """TF-IDF features and one ridge per score, predicting scores in [0, 1] (scaled per prompt).

    Args:
        vocabularies (dict[str, list[str]]): per vectorizer of :data:`VECTORIZERS`, its terms in column order.
        idf (dict[str, np.ndarray]): per vectorizer, its idf (float64, one per term).
        coef (np.ndarray): (K, F) ridge coefficients over the stacked features; intercept (np.ndarray): (K,).
        alphas (list[float]): the ridge penalty picked on valid, per score.
        weight (np.ndarray): (K,) the encoder's share in the blend.
    """

    def __init__(self, vocabularies: dict, idf: dict, coef, intercept, alphas, weight):
        self.vocabularies, self.idf = vocabularies, {k: np.asarray(v, dtype=np.float64) for k, v in idf.items()}
        self.coef, self.intercept = np.asarray(coef, dtype=np.float64), np.asarray(intercept, dtype=np.float64)
        self.alphas, self.weight = [float(a) for a in alphas], np.asarray(weight, dtype=np.float64)
        self.vectorizers = {}
        for kind, terms in vocabularies.items():  # rebuilt from the saved vocabulary and idf
            v = vectorizer(VECTORIZERS[kind], {t: i for i, t in enumerate(terms)})
            v.idf_ = self.idf[kind]
            self.vectorizers[kind] = v

    def features(self, texts):  # sparse (N, F)
        from scipy.sparse import hstack

        return hstack([self.vectorizers[k].transform(texts) for k in VECTORIZERS], format="csr")

    def predict01(self, texts) -> np.ndarray:  # (N, K) in [0, 1]
        return np.clip(np.asarray(self.features(texts) @ self.coef.T) + self.intercept, 0.0, 1.0)

    @classmethod
    def fit(cls, train_texts, train01, valid_texts, valid01) -> "TfidfStack":
        """Fit the vectorizers and a ridge per score on train; pick each score's ``alpha`` in :data:`ALPHAS` on valid.

        Args:
            train_texts, valid_texts (list[str]); train01, valid01 (array-like, (N,) or (N, K)): targets in [0, 1].
        """
        from scipy.sparse import hstack
        from sklearn.linear_model import Ridge
        fitted = {k: vectorizer(s) for k, s in VECTORIZERS.items()}
        x_train = hstack([fitted[k].fit_transform(train_texts) for k in VECTORIZERS], format="csr")
        x_valid = hstack([fitted[k].transform(valid_texts) for k in VECTORIZERS], format="csr")
        y_train, y_valid = as_matrix(train01), as_matrix(valid01)
        coef, intercept, alphas = [], [], []
        for k in range(y_train.shape[1]):
            tr, va = np.isfinite(y_train[:, k]), np.isfinite(y_valid[:, k])
            best = None
            for alpha in ALPHAS:
                ridge = Ridge(alpha=alpha).fit(x_train[tr], y_train[tr, k])
                err = float(np.mean((np.clip(ridge.predict(x_valid[va]), 0, 1) - y_valid[va, k]) ** 2))
                if best is None or err < best[0]:
                    best = (err, alpha, ridge)
            coef.append(best[2].coef_)
            intercept.append(best[2].intercept_)
            alphas.append(best[1])
        vocab = {k: sorted(v.vocabulary_, key=v.vocabulary_.get) for k, v in fitted.items()}
        return cls(vocab, {k: v.idf_ for k, v in fitted.items()}, np.vstack(coef), np.asarray(intercept), alphas,
                   np.ones(len(alphas)))

    def save(self, folder) -> None:
        """Write ``stack.json`` and ``arrays.npz`` into ``folder`` (atomically; no pickle)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"coef": self.coef, "intercept": self.intercept, **{f"idf_{k}": v for k, v in self.idf.items()}}
        atomic_write(folder / "arrays.npz", lambda tmp: Path(tmp).write_bytes(npz_bytes(arrays)))
        info = {"format": FORMAT, "kind": "tfidf", "vectorizers": VECTORIZERS, "alphas": self.alphas,
                "weight": self.weight.tolist(), "vocabularies": self.vocabularies}
        atomic_write(folder / "stack.json", lambda tmp: Path(tmp).write_text(json.dumps(info), encoding="utf-8"))

    @classmethod
    def load(cls, folder) -> "TfidfStack":
        """Read what :meth:`save` wrote; anything else (another file, a pickle, object arrays, parts that do not fit
        together, non-finite or out-of-bounds numbers) is refused with CheckpointError, in one line."""
        folder = Path(folder)
        check_files(folder, ("stack.json", "arrays.npz"))
        info = read_json(folder / "stack.json")
        if info.get("format") != FORMAT or info.get("kind") != "tfidf" or info.get("vectorizers") != VECTORIZERS:
            raise CheckpointError(f"{folder / 'stack.json'}: not a TF-IDF stack of this scorelib (format "
                                  f"{info.get('format')!r}, kind {info.get('kind')!r})")
        vocab, alphas, weight = info.get("vocabularies"), info.get("alphas"), info.get("weight")
        if not isinstance(vocab, dict) or set(vocab) != set(VECTORIZERS) or \
                any(not isinstance(vocab[k], list) or len(vocab[k]) > VECTORIZERS[k]["max_features"] or
                    not all(isinstance(t, str) for t in vocab[k]) for k in VECTORIZERS):
            raise CheckpointError(f"{folder / 'stack.json'}: no vocabulary of terms for each of "
                                  f"{', '.join(VECTORIZERS)} (at most their max_features); the file was edited")
        k = len(weight) if isinstance(weight, list) else 0
        if not 1 <= k <= 1000 or not isinstance(alphas, list) or len(alphas) != k or \
                any(a not in ALPHAS for a in alphas) or \
                any(type(w) not in (int, float) or not 0 <= w <= 1 for w in weight):
            raise CheckpointError(f"{folder / 'stack.json'}: needs a weight in [0, 1] and an alpha among {ALPHAS} per "
                                  f"score, got weight {str(weight)[:80]}, alphas {str(alphas)[:80]}; the file was "
                                  f"edited")
        sizes = {f"idf_{v}": (len(vocab[v]),) for v in VECTORIZERS}
        shapes = {"coef": (k, sum(n for (n,) in sizes.values())), "intercept": (k,), **sizes}
        arrays = read_npz(folder / "arrays.npz", shapes)
        for name, value in arrays.items():  # a ridge fitted on targets in [0, 1]; idf is at least 1
            low, high = (1.0, 1e6) if name.startswith("idf") else (-1e6, 1e6)
            if not (np.all(np.isfinite(value)) and np.all(value >= low) and np.all(value <= high)):
                raise CheckpointError(f"{folder / 'arrays.npz'}: array {name!r} holds values that are not finite or "
                                      f"lie outside [{low:g}, {high:g}]; the file is damaged")
        return cls(vocab, {v: arrays[f"idf_{v}"] for v in VECTORIZERS}, arrays["coef"], arrays["intercept"], alphas,
                   weight)


def check_files(folder: Path, allowed: tuple) -> None:
    """``stack/`` holds only what scorelib writes there (and the leftovers of an interrupted atomic write)."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: missing; this save dir was trained with --stack but its stack is gone")
    for path in sorted(folder.iterdir()):
        leftover = path.name.startswith(".") and path.name.endswith(".tmp")
        if path.name not in allowed and not leftover:
            raise CheckpointError(f"{path}: refused: a stack folder holds only {', '.join(allowed)}; remove this "
                                  f"file (scorelib never writes it, and never loads pickles)")


def npz_bytes(arrays: dict) -> bytes:
    import io
    np.savez(buffer := io.BytesIO(), **arrays)
    return buffer.getvalue()


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; this save dir was trained with --stack but its stack is gone")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a JSON stack file ({type(e).__name__}: {e})") from None
    return value if isinstance(value, dict) else {}


def read_npz(path: Path, shapes: dict) -> dict:
    """Arrays of an ``.npz``, read as safely as ``weights_only=True``: ``allow_pickle=False``, plain numbers only,
    exactly the arrays of ``shapes`` (name -> shape), each member's size checked before it is read."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; this save dir was trained with --stack but its stack is gone")
    try:
        with zipfile.ZipFile(path) as z:
            sizes = {i.filename.removesuffix(".npy"): i.file_size for i in z.infolist()}
    except (OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: refused to load: not a plain .npz of numbers ({e})") from None
    if set(sizes) != set(shapes):
        raise CheckpointError(f"{path}: refused to load: it holds arrays {sorted(sizes)}, not {sorted(shapes)}")
    for name, shape in shapes.items():  # float64, plus the .npy header
        if sizes[name] > 8 * int(np.prod(shape)) + 4096:
            raise CheckpointError(f"{path}: refused to load: array {name!r} takes {sizes[name]:,} bytes, more than "
                                  f"its shape {shape} from stack.json allows")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: refused to load: not a plain .npz of numbers, and pickled data could run "
                              f"code when unpickled ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    for name, value in arrays.items():
        if value.dtype.kind not in "fiu":
            raise CheckpointError(f"{path}: refused to load: array {name!r} holds {value.dtype}, not numbers")
        if value.shape != shapes[name]:
            raise CheckpointError(f"{path}: its vocabularies, idf and coefficients do not fit together (array "
                                  f"{name!r} is {value.shape}, stack.json asks for {shapes[name]})")
    return arrays


class Blend:
    """The stacks of a scorer's models (``stacks``: one :class:`TfidfStack` per model, in their order) and the
    encoder's share in the blend per score (``weight``, (K,))."""

    def __init__(self, stacks: list, weight):
        self.stacks, self.weight = stacks, np.asarray(weight, dtype=np.float64)

    def parts01(self, texts, encoder_each: np.ndarray) -> dict[str, np.ndarray]:
        """``{"encoder", "stack", "blend"}``, each shaped as ``encoder_each``: (M, N), or (M, N, K)."""
        stack = np.stack([s.predict01(texts).reshape(encoder_each.shape[1:]) for s in self.stacks])
        w = self.weight.reshape(encoder_each.shape[2:])
        return {"encoder": encoder_each, "stack": stack, "blend": w * encoder_each + (1 - w) * stack}


def load_blend(path, model_dirs: list, cross_validated: bool) -> Blend:
    """The :class:`Blend` of a save dir (or a CV dir: its folds' stacks and the out-of-fold weight)."""
    stacks = [TfidfStack.load(Path(d) / STACK_DIR) for d in model_dirs]
    if not cross_validated:
        return Blend(stacks, stacks[0].weight)
    check_files(Path(path) / STACK_DIR, ("blend.json",))
    weight = read_json(Path(path) / STACK_DIR / "blend.json").get("weight")
    if not isinstance(weight, list) or len(weight) != len(stacks[0].weight) or \
            any(type(w) not in (int, float) or not 0 <= w <= 1 for w in weight):
        raise CheckpointError(f"{Path(path) / STACK_DIR / 'blend.json'}: no blend weight in [0, 1] for each of the "
                              f"{len(stacks[0].weight)} score(s)")
    return Blend(stacks, np.asarray(weight, dtype=np.float64))


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
