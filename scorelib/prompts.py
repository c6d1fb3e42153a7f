"""The prompt table: each prompt's id, score range, rounding step and stored context.

fairseq keeps such per-task facts on the task (``task.source_dictionary`` and friends);
scorelib keeps them in this small table, saves it beside the checkpoints as
``prompts.json`` and reads it back when scoring, so a save dir alone is enough to score.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
    """

    ids: list[str]
    ranges: dict[str, tuple[float, float]]
    step: float | None = None
    contexts: dict[str, str | None] = field(default_factory=dict)
    uses_context: bool = False

    def __post_init__(self):
        self.ids = [str(i) for i in self.ids]
        self._index = {pid: i for i, pid in enumerate(self.ids)}
        for pid in self.ids:
            lo, hi = self.ranges[pid]
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"prompt {pid!r}: score range must have min < max, got {lo} .. {hi}")
        if self.step is not None and not (self.step > 0):
            raise ValueError(f"--score-step must be positive, got {self.step}")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, pid) -> bool:
        return str(pid) in self._index

    def index(self, pid: str) -> int:
        """Embedding row of prompt ``pid``; a clear error lists the known ids."""
        try:
            return self._index[str(pid)]
        except KeyError:
            raise KeyError(f"unknown prompt {pid!r}; known prompts: {', '.join(self.ids)}") from None

    def bounds(self, prompts) -> tuple[np.ndarray, np.ndarray]:
        """Arrays of per-row ``min`` and ``max`` for a sequence of prompt ids."""
        pairs = [self.ranges[self.ids[self.index(p)]] for p in prompts]
        lo = np.array([a for a, _ in pairs], dtype=np.float64)
        hi = np.array([b for _, b in pairs], dtype=np.float64)
        return lo, hi

    def scale(self, scores, prompts) -> np.ndarray:
        """Scores on each prompt's scale -> [0, 1]: ``(score - min) / (max - min)``."""
        lo, hi = self.bounds(prompts)
        return (np.asarray(scores, dtype=np.float64) - lo) / (hi - lo)

    def unscale(self, values, prompts) -> np.ndarray:
        """[0, 1] -> each prompt's scale, the seed's ``pred * (max - min) + min``."""
        lo, hi = self.bounds(prompts)
        return np.asarray(values, dtype=np.float64) * (hi - lo) + lo

    def round(self, scores, prompts) -> np.ndarray:
        """Round to the nearest ``step`` above each prompt's min, clipped to its range."""
        scores = np.asarray(scores, dtype=np.float64)
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
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PromptTable":
        return cls(
            ids=list(d["ids"]),
            ranges={p: (float(a), float(b)) for p, (a, b) in d["ranges"].items()},
            step=d.get("step"),
            contexts=dict(d.get("contexts") or {}),
            uses_context=bool(d.get("uses_context", False)),
        )

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path) -> "PromptTable":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"prompt table not found: {path} (a save dir needs prompts.json to score)")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a valid prompt table ({e})") from None
