"""The ``--stack tfidf`` model as scoring needs it: TF-IDF features over saved vocabularies, a ridge per score, and
the blend with the encoder; its files (``stack.json``, ``arrays.npz``, a CV dir's ``blend.json``), read without
pickle and checked. scikit-learn and NumPy only: an ONNX export scores with this module and no PyTorch
(:mod:`scorelib.stack.tfidf` fits it during training and cross-validation).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from scorelib.data.scores import as_matrix
from scorelib.errors import CheckpointError
from scorelib.writers import atomic_write

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
        self.write(folder / "stack.json", folder / "arrays.npz")

    def write(self, json_path: Path, npz_path: Path) -> None:
        """:meth:`save`'s two files under any names (an ONNX export keeps one pair per model)."""
        arrays = {"coef": self.coef, "intercept": self.intercept, **{f"idf_{k}": v for k, v in self.idf.items()}}
        atomic_write(npz_path, lambda tmp: Path(tmp).write_bytes(npz_bytes(arrays)))
        info = {"format": FORMAT, "kind": "tfidf", "vectorizers": VECTORIZERS, "alphas": self.alphas,
                "weight": self.weight.tolist(), "vocabularies": self.vocabularies}
        atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(info), encoding="utf-8"))

    @classmethod
    def load(cls, folder) -> "TfidfStack":
        """Read what :meth:`save` wrote; anything else (another file, a pickle, object arrays, parts that do not fit
        together, non-finite or out-of-bounds numbers) is refused with CheckpointError, in one line."""
        folder = Path(folder)
        check_files(folder, ("stack.json", "arrays.npz"))
        return cls.read(folder / "stack.json", folder / "arrays.npz")

    @classmethod
    def read(cls, json_path: Path, npz_path: Path) -> "TfidfStack":
        """:meth:`load`'s checks on a pair of files written by :meth:`write`."""
        info = read_json(Path(json_path))
        if info.get("format") != FORMAT or info.get("kind") != "tfidf" or info.get("vectorizers") != VECTORIZERS:
            raise CheckpointError(f"{json_path}: not a TF-IDF stack of this scorelib (format "
                                  f"{info.get('format')!r}, kind {info.get('kind')!r})")
        vocab, alphas, weight = info.get("vocabularies"), info.get("alphas"), info.get("weight")
        if not isinstance(vocab, dict) or set(vocab) != set(VECTORIZERS) or \
                any(not isinstance(vocab[k], list) or len(vocab[k]) > VECTORIZERS[k]["max_features"] or
                    not all(isinstance(t, str) for t in vocab[k]) for k in VECTORIZERS):
            raise CheckpointError(f"{json_path}: no vocabulary of terms for each of "
                                  f"{', '.join(VECTORIZERS)} (at most their max_features); the file was edited")
        k = len(weight) if isinstance(weight, list) else 0
        if not 1 <= k <= 1000 or not isinstance(alphas, list) or len(alphas) != k or \
                any(a not in ALPHAS for a in alphas) or \
                any(type(w) not in (int, float) or not 0 <= w <= 1 for w in weight):
            raise CheckpointError(f"{json_path}: needs a weight in [0, 1] and an alpha among {ALPHAS} per "
                                  f"score, got weight {str(weight)[:80]}, alphas {str(alphas)[:80]}; the file was "
                                  f"edited")
        sizes = {f"idf_{v}": (len(vocab[v]),) for v in VECTORIZERS}
        shapes = {"coef": (k, sum(n for (n,) in sizes.values())), "intercept": (k,), **sizes}
        arrays = read_npz(Path(npz_path), shapes)
        for name, value in arrays.items():  # a ridge fitted on targets in [0, 1]; idf is at least 1
            low, high = (1.0, 1e6) if name.startswith("idf") else (-1e6, 1e6)
            if not (np.all(np.isfinite(value)) and np.all(value >= low) and np.all(value <= high)):
                raise CheckpointError(f"{npz_path}: array {name!r} holds values that are not finite or "
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
