"""The prompt table: each prompt's id, score range, rounding step and stored context.

fairseq keeps such per-task facts on the task (``task.source_dictionary`` and friends);
scorelib keeps them in this small table, saves it beside the checkpoints as
``prompts.json`` and reads it back when scoring, so a save dir alone is enough to score.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.data.scores import SCORE, ScoreColumns
from scorelib.data.tables import natural_key
from scorelib.errors import CheckpointError, DataError, OptionError, UnknownPromptError

logger = logging.getLogger(__name__)


@dataclass
class PromptTable:
    """Prompt ids (strings, in embedding-row order) with their ranges and contexts.

    Args:
        ids (list[str]): prompt ids; ``ids[i]`` uses row ``i`` of the prompt embedding.
        ranges (dict[str, tuple[float, float]]): ``(min, max)`` per prompt, ``min < max``.
        step (float | None): rounding step of the gold scores (e.g. 1 or 0.5); ``None``
            for continuous targets.
        contexts (dict[str, str | None]): the context (question, reference answer) stored
            with each prompt when it is constant within that prompt, else ``None``.
        uses_context (bool): whether the model was trained on (text, context) pairs.
        cutpoints (dict[str, list[float]]): per prompt, increasing thresholds between its rubric points
            (``--fit-cutpoints``); a prompt listed here rounds by them instead of to the nearest step.
        traits (list[str]): the traits of ``--score-column a,b,c``; ``[]`` for one score column. With traits,
            ``ranges`` span every trait's range (for plots) and ``step`` is None; each trait's own table is
            :meth:`for_trait`.
        trait_ranges, trait_steps, trait_cutpoints (dict[str, ...]): per trait, its ``ranges``, ``step`` and
            ``cutpoints`` as above.
        implicit_prompt (bool): the data had no prompt column, so its one prompt (id ``"0"``) is no one's name:
            user-facing lines leave it out ("on the 1–5 scale").

    One score is one trait: :attr:`views` holds a single-score table per score (the table itself for one
    score column), and :meth:`scale`, :meth:`unscale`, :meth:`round` take (N,) or (N, K) arrays and give
    the same shape back, column k on score k's own ranges and step.
    """

    ids: list[str]
    ranges: dict[str, tuple[float, float]]
    step: float | None = None
    contexts: dict[str, str | None] = field(default_factory=dict)
    uses_context: bool = False
    cutpoints: dict[str, list[float]] = field(default_factory=dict)
    traits: list[str] = field(default_factory=list)
    trait_ranges: dict = field(default_factory=dict)
    trait_steps: dict = field(default_factory=dict)
    trait_cutpoints: dict = field(default_factory=dict)
    implicit_prompt: bool = False

    def __post_init__(self):
        self.ids = [str(i) for i in self.ids]
        self._index = {pid: i for i, pid in enumerate(self.ids)}
        for pid in self.ids:
            lo, hi = self.ranges[pid]
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise OptionError(f"prompt {pid!r}: score range must have min < max, got {lo} .. {hi}")
        if self.step is not None and not (self.step > 0):
            raise OptionError(f"--score-step must be positive, got {self.step}")
        self.cutpoints = {str(p): [float(c) for c in cuts] for p, cuts in (self.cutpoints or {}).items()}
        for pid, cuts in self.cutpoints.items():
            lo, hi = self.ranges[pid]
            if self.step is None or len(cuts) != self.num_points(pid) - 1 or np.any(np.diff(cuts) <= 0):
                raise OptionError(f"prompt {pid!r}: cut-points must be {self.num_points(pid) - 1} strictly increasing "
                                  f"thresholds between the rubric points of {lo:g} .. {hi:g}, got {cuts}")
        self.traits = [str(t) for t in self.traits or []]
        self.scores = ScoreColumns(tuple(self.traits))
        views = {t: PromptTable(self.ids, self.trait_ranges[t], self.trait_steps.get(t), self.contexts,
                                self.uses_context, (self.trait_cutpoints or {}).get(t, {}),
                                implicit_prompt=self.implicit_prompt) for t in self.traits}
        self.views: dict[str, PromptTable] = views or {SCORE: self}

    @classmethod
    def from_scales(cls, ids, ranges: dict, steps: dict, traits=(), **contexts) -> "PromptTable":
        """The table of K scores given each score's ``{prompt: (min, max)}`` and step, keyed by score name."""
        if not traits:  # one score column: the table is its own view
            return cls(ids=ids, ranges=ranges[SCORE], step=steps[SCORE], **contexts)
        span = {p: (min(r[p][0] for r in ranges.values()), max(r[p][1] for r in ranges.values())) for p in ids}
        return cls(ids=ids, ranges=span, step=None, traits=list(traits), trait_ranges=ranges, trait_steps=steps,
                   **contexts)

    @property
    def num_traits(self) -> int:
        """Outputs of the model: K, the number of scores (1 for one score column)."""
        return len(self.views)

    def for_trait(self, trait: str) -> "PromptTable":
        """The single-score table of one score (``"score"`` for one score column): its ranges and step."""
        if trait not in self.views:
            raise OptionError(f"unknown trait {trait!r}; this model scores {', '.join(self.traits) or 'one score'}")
        return self.views[trait]

    def _each(self, method: str, values, prompts) -> np.ndarray:
        """Apply a view's 1-D ``method`` to column k of ``values`` ((N,) or (N, K)); the result has their shape."""
        values = np.asarray(values, dtype=np.float64)
        matrix = values.reshape(-1, len(self.views))
        out = [getattr(view, method)(matrix[:, k], prompts) for k, view in enumerate(self.views.values())]
        return np.stack(out, axis=1).reshape(values.shape)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, pid) -> bool:
        return str(pid) in self._index

    def index(self, pid: str) -> int:
        """Embedding row of prompt ``pid``; a clear error lists the known ids."""
        try:
            return self._index[str(pid)]
        except KeyError:
            raise UnknownPromptError(f"unknown prompt {pid!r}; known prompts: {', '.join(self.ids)}") from None

    def bounds(self, prompts) -> tuple[np.ndarray, np.ndarray]:
        """Arrays of per-row ``min`` and ``max`` for a sequence of prompt ids."""
        pairs = [self.ranges[self.ids[self.index(p)]] for p in prompts]
        lo = np.array([a for a, _ in pairs], dtype=np.float64)
        hi = np.array([b for _, b in pairs], dtype=np.float64)
        return lo, hi

    def scale(self, scores, prompts) -> np.ndarray:
        """Scores on each prompt's scale -> [0, 1]: ``(score - min) / (max - min)``."""
        return self._each("_scale1", scores, prompts)

    def unscale(self, values, prompts) -> np.ndarray:
        """[0, 1] -> each prompt's scale, the notes' ``pred * (max - min) + min``."""
        return self._each("_unscale1", values, prompts)

    def _scale1(self, scores, prompts) -> np.ndarray:
        lo, hi = self.bounds(prompts)
        return (scores - lo) / (hi - lo)

    def _unscale1(self, values, prompts) -> np.ndarray:
        lo, hi = self.bounds(prompts)
        return values * (hi - lo) + lo

    def num_points(self, pid: str) -> int:
        """How many rubric points prompt ``pid`` has: ``(max - min) / step + 1`` (needs a step)."""
        lo, hi = self.ranges[str(pid)]
        return int(round((hi - lo) / self.step)) + 1

    def round(self, scores, prompts) -> np.ndarray:
        """Round to the rubric points: by the prompt's cut-points where fitted, else as :meth:`round_nearest`."""
        return self._each("_round1", scores, prompts)

    def _round1(self, scores, prompts) -> np.ndarray:
        out = self._round_nearest1(scores, prompts)
        if not self.cutpoints:
            return out
        prompts = np.asarray([str(p) for p in prompts], dtype=object)
        for pid, cuts in self.cutpoints.items():
            rows = (prompts == pid) & np.isfinite(scores)
            out[rows] = self.ranges[pid][0] + np.searchsorted(cuts, scores[rows], side="right") * self.step
        return out

    def without_cutpoints(self) -> "PromptTable":
        """A copy that rounds to the nearest step (the table as it was before ``--fit-cutpoints``)."""
        return PromptTable.from_dict({**self.to_dict(), "cutpoints": {}, "trait_cutpoints": {}})

    def round_nearest(self, scores, prompts) -> np.ndarray:
        """Round to the nearest ``step`` above each prompt's min, clipped to its range."""
        return self._each("_round_nearest1", scores, prompts)

    def _round_nearest1(self, scores, prompts) -> np.ndarray:
        lo, hi = self.bounds(prompts)
        if self.step is None:
            return np.clip(scores, lo, hi)
        # Halves round up (np.round would round them to even, which depends on where the range starts).
        rounded = lo + np.floor((scores - lo) / self.step + 0.5) * self.step
        return np.clip(rounded, lo, hi)

    def to_dict(self) -> dict:
        return {
            "ids": list(self.ids),
            "ranges": {p: [float(a), float(b)] for p, (a, b) in self.ranges.items() if p in self._index},
            "step": None if self.step is None else float(self.step),
            "contexts": {p: self.contexts.get(p) for p in self.ids},
            "uses_context": bool(self.uses_context),
            **({"cutpoints": {p: list(map(float, c)) for p, c in self.cutpoints.items()}} if self.cutpoints else {}),
            **({"traits": list(self.traits),
                "trait_ranges": {t: self.views[t].to_dict()["ranges"] for t in self.traits},
                "trait_steps": {t: self.views[t].to_dict()["step"] for t in self.traits},
                "trait_cutpoints": {t: v.to_dict()["cutpoints"] for t, v in self.views.items() if v.cutpoints}}
               if self.traits else {}),
            **({"implicit_prompt": True} if self.implicit_prompt else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PromptTable":
        return cls(
            ids=list(d["ids"]), ranges={p: (float(a), float(b)) for p, (a, b) in d["ranges"].items()},
            step=d.get("step"), contexts=dict(d.get("contexts") or {}), uses_context=bool(d.get("uses_context", False)),
            cutpoints=dict(d.get("cutpoints") or {}), traits=list(d.get("traits") or []),
            trait_ranges={t: {p: (float(a), float(b)) for p, (a, b) in r.items()}
                          for t, r in (d.get("trait_ranges") or {}).items()},
            trait_steps=dict(d.get("trait_steps") or {}), trait_cutpoints=dict(d.get("trait_cutpoints") or {}),
            implicit_prompt=bool(d.get("implicit_prompt", False)))

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path) -> "PromptTable":
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"prompt table not found: {path} (a save dir needs prompts.json to score)")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise CheckpointError(f"{path}: not a valid prompt table ({e})") from None
        return cls.checked(d, str(path))

    @classmethod
    def checked(cls, d, where: str) -> "PromptTable":
        """:meth:`from_dict` on a table read from a file; an edited or damaged one is refused in one line."""
        try:
            return cls.from_dict(d)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{where}: not a valid prompt table ({type(e).__name__}: {e})") from None

    # ------------------------------------------------------------------ built from the data
    @classmethod
    def from_tables(cls, tables, score_range=None, step=None) -> "PromptTable":
        """Build the table from the checked data (:class:`scorelib.data.tables.Tables`) and check every score.

        A prompt's range is ``score_range`` (``--score-range``) if given, else the one the layout or
        ``--score-ranges`` declares, else its training scores' min and max (with a warning). Scores
        outside their prompt's range are refused in train and kept, with a warning, elsewhere. Each of
        the K scores gets its ranges this way; a trait's own rows in a ranges file come before the others.
        """
        frames = tables.frames
        ids = sorted(frames["train"]["prompt"].unique(), key=natural_key)
        for split, frame in frames.items():
            extra = sorted(set(frame["prompt"]) - set(ids), key=natural_key)
            if extra:
                rows = frame.loc[frame["prompt"].isin(extra), "_row"].tolist()[:5]
                raise DataError(f"{split}: prompt(s) {', '.join(map(repr, extra))} (rows {rows}...) do not occur "
                                f"in train, so the model cannot learn them; add training rows or leave them out "
                                f"with --prompts")
        if score_range is not None and not score_range[0] < score_range[1]:
            raise OptionError(f"--score-range {score_range[0]:g} {score_range[1]:g}: MIN must be below MAX")
        ranges, steps = {}, {}
        for name, column in zip(tables.scores.names, tables.scores.frame_columns):
            rows = tables.trait_ranges.get(name, {})  # a ranges file's rows for this trait: a prompt's own, or "*"
            own = {p: rows[p] if p in rows else rows["*"] for p in ids if p in rows or "*" in rows}
            declared = {p: tuple(score_range) for p in ids} if score_range is not None else {**tables.ranges, **own}
            ranges[name] = {p: _range_of(p, declared, frames["train"], column, tables.implicit_prompt) for p in ids}
            steps[name] = step if step is not None else tables.trait_steps.get(name, tables.step)
        implicit = tables.implicit_prompt and ids == ["0"]
        table = cls.from_scales(ids, ranges, steps, tables.scores.traits, implicit_prompt=implicit, **_contexts(frames))
        for split, frame in frames.items():
            table.check_scores(frame, split, tables.score_column, strict=(split == "train"))
        return table

    def check_scores(self, frame, split: str, score_column: str = "score", strict: bool = True) -> None:
        """Refuse (``strict``) or warn about scores outside their prompt's range, naming file, row and column."""
        for view, column, user in zip(self.views.values(), self.scores.frame_columns,
                                      self.scores.user_columns(score_column)):
            view._check_column(frame, frame[column].to_numpy(np.float64), split, user, strict)

    def _check_column(self, frame, score, split: str, score_column: str, strict: bool) -> None:
        lo, hi = self.bounds(frame["prompt"])
        outside = (score < lo) | (score > hi)
        if not outside.any():
            return
        i = int(np.flatnonzero(outside)[0])
        where = frame["_file"].iloc[i] if "_file" in frame else split
        msg = (f"{where}: row {frame['_row'].iloc[i]}, column {score_column!r}: {score[i]:g} is outside prompt "
               f"{frame['prompt'].iloc[i]!r}'s range {lo[i]:g} .. {hi[i]:g} ({int(outside.sum())} such rows)")
        if strict:
            raise DataError(msg + "; fix the scores or declare a wider range")
        logger.warning("%s: %s; these rows are kept", split, msg)


def _range_of(pid: str, declared: dict, train: pd.DataFrame, column="score", implicit=False) -> tuple[float, float]:
    if pid in declared:
        return tuple(map(float, declared[pid]))
    scores = train.loc[train["prompt"] == pid, column]
    lo, hi = float(scores.min()), float(scores.max())
    what = ("the scores" if implicit else f"prompt {pid!r}") + ("" if column == "score" else f", trait {column[6:]!r}")
    if lo == hi:
        raise DataError(f"{what}: every training score is {lo:g}; declare its range with "
                        f"--score-range MIN MAX or --score-ranges FILE")
    logger.warning("%s: no declared range; using the training split's %g .. %g", what, lo, hi)
    return lo, hi


def _contexts(frames: dict) -> dict:
    """``uses_context`` (every train row has one) and the context of each prompt where it is constant."""
    uses_context = bool(frames["train"]["context"].notna().all())
    contexts = {}
    if uses_context:
        every = pd.concat([f[["prompt", "context"]] for f in frames.values()])
        for pid, group in every.groupby("prompt"):
            values = group["context"].unique()
            contexts[pid] = str(values[0]) if len(values) == 1 else None
    return {"contexts": contexts, "uses_context": uses_context}
