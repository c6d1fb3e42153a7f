"""Read and check scored tables: the input side of ``load_dataset``.

fairseq reads binarized data that ``fairseq-preprocess`` checked beforehand; scorelib reads
the user's own CSV/TSV/XLSX tables directly, so this module does both jobs: readers,
column mapping, splitting one table, unique keys, and errors that name the file, row and
column. Everything is read as text first ("11.10" stays "11.10"), then checked.
"""
from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.data.readers import COLUMNS, LAYOUTS, SUFFIXES, read_table
from scorelib.data.scores import (ScoreColumns, candidates_hint, check_named_prompts, has_trait_column,
                                  prompt_column_candidates, read_ranges, read_trait_ranges)
from scorelib.errors import DataError, MissingFileError, OptionError

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def natural_key(pid: str):
    """Sort prompt ids as numbers where they look like numbers ("2" < "10"), keeping them strings."""
    try:
        return (0, float(pid), pid)
    except ValueError:
        return (1, 0.0, pid)


def _column(frame, name, path, flag) -> pd.Series:
    if name not in frame.columns:
        found = [c for c in frame.columns if c != "_row"]
        hint = ""
        if len(found) == 1 and any(sep in found[0] for sep in "\t;,|"):
            hint = " (one column holding separators: is the delimiter right for this file's extension?)"
        raise DataError(f"{path}: missing column {name!r} ({flag}); columns found: {found}{hint}")
    return frame[name].astype(str)


def _rows(frame, mask, limit=5) -> str:
    rows = frame["_row"][mask].tolist()
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(map(str, rows[:limit])) + more


@dataclass
class Columns:
    """The user's column names (``--key-column`` ...); ``None`` takes the layout's or scorelib's own name.

    ``score`` is ``--score-column`` as given; :attr:`scores` is it parsed, once, into one score or K traits.
    """

    key: str | None = None
    prompt: str | None = None
    text: str | None = None
    context: str | None = None
    score: str | None = None
    scores: ScoreColumns = field(init=False)

    def __post_init__(self):
        self.scores = ScoreColumns.parse(self.score)

    @classmethod
    def from_args(cls, args) -> "Columns":
        return cls(args.key_column, args.prompt_column, args.text_column, args.context_column, args.score_column)

    def resolve(self, header, layout: dict) -> dict[str, str | None]:
        """The names used in one file with columns ``header``: optional columns only where present."""
        return {"key": self.key or layout.get("key") or ("key" if "key" in header else None),
                "prompt": self.prompt or layout.get("prompt") or ("prompt" if "prompt" in header else None),
                "text": self.text or layout.get("text") or "text",
                "context": self.context or ("context" if "context" in header else None),
                "score": self.score or layout.get("score") or "score"}


def normalize(frame, path, names: dict, labeled: bool = True, scores: ScoreColumns | None = None) -> pd.DataFrame:
    """Map a raw table onto scorelib's columns and refuse bad rows with a clear error.

    Args:
        frame (pd.DataFrame): from :func:`read_table`.
        path: the file, named in errors.
        names (dict): the user's name for each of ``key, prompt, text, context, score`` (:meth:`Columns.resolve`);
            without a key column keys are ``"{file stem}:{row}"``; without a prompt column all rows share prompt "0".
        labeled (bool): whether the score column(s) are required.
        scores (ScoreColumns, optional): the parsed ``--score-column`` (default: one column, ``names["score"]``).

    Returns:
        pd.DataFrame: columns ``key, prompt, text, context``, the gold columns ``scores.frame_columns``
        (``score``, or ``score_{trait}`` per trait; float64 exactly as parsed, NaN for unlabeled tables), ``_row``.
    """
    scores = scores or ScoreColumns()
    out = pd.DataFrame({"_row": frame["_row"].to_numpy()})
    out["key"] = (_column(frame, names["key"], path, "--key-column").str.strip().to_numpy() if names["key"]
                  else [f"{Path(path).stem}:{r}" for r in out["_row"]])
    out["prompt"] = (_column(frame, names["prompt"], path, "--prompt-column").str.strip().to_numpy()
                     if names["prompt"] else "0")
    out["text"] = _column(frame, names["text"], path, "--text-column").to_numpy()
    out["context"] = _column(frame, names["context"], path, "--context-column").to_numpy() if names["context"] else None
    for column, user in zip(scores.frame_columns, scores.user_columns(names["score"])):
        out[column] = _scores(frame, path, user, out) if labeled else np.nan
    for col, flag in (("key", "--key-column"), ("prompt", "--prompt-column")):
        empty = out[col].str.len().to_numpy() == 0
        if empty.any():
            raise DataError(f"{path}: column {names[col]!r} ({flag}): empty {col} at row(s) {_rows(out, empty)}")
    for col in ("text", "context") if names["context"] else ("text",):
        blank = out[col].str.strip().str.len().to_numpy() == 0
        if blank.any():
            raise DataError(f"{path}: column {names[col]!r}: empty or whitespace-only {col} at row(s) "
                            f"{_rows(out, blank)}")
    dup = out["key"].duplicated(keep=False).to_numpy()
    if dup.any():
        first = out["key"][dup].iloc[0]
        raise DataError(f"{path}: duplicate key {first!r} at rows {_rows(out, (out['key'] == first).to_numpy())}"
                        f" ({int(dup.sum())} rows share a key; keys must be unique)")
    return out[COLUMNS[:-1] + scores.frame_columns + ["_row"]]


def _scores(frame, path, column, out) -> np.ndarray:
    raw = _column(frame, column, path, "--score-column").str.strip()
    score = pd.to_numeric(raw, errors="coerce").astype(np.float64).to_numpy()
    bad = ~np.isfinite(score)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: row {out['_row'][i]}, column {column!r}: score {raw.iloc[i]!r} is not a finite "
                        f"number ({int(bad.sum())} such rows: {_rows(out, bad)})")
    return score


def find_split_files(folder: Path, need_train: bool = True) -> dict[str, Path]:
    """The ``train``/``valid``/``test`` tables of a data folder."""
    found = {}
    for split in SPLITS:
        hits = [folder / f"{split}{s}" for s in SUFFIXES if (folder / f"{split}{s}").is_file()]
        if len(hits) > 1:
            raise DataError(f"{folder}: several {split} tables ({', '.join(h.name for h in hits)}); keep one")
        if hits:
            found[split] = hits[0]
    if need_train and "train" not in found or not found:
        names = ", ".join(sorted(p.name for p in folder.iterdir())) or "(empty)"
        raise DataError(f"{folder}: no train table (train.csv, train.tsv or train.xlsx); the folder holds: {names}")
    return found


def check_fractions(valid_fraction: float, test_fraction: float) -> None:
    for name, f in (("--valid-fraction", valid_fraction), ("--test-fraction", test_fraction)):
        if not 0 <= f < 1:
            raise OptionError(f"{name} must be in [0, 1), got {f}")
    if valid_fraction + test_fraction >= 1:
        raise OptionError("--valid-fraction + --test-fraction must stay below 1")


def split_frame(frame, valid_fraction, test_fraction, seed) -> dict[str, pd.DataFrame]:
    """Split one table into train/valid/test, per prompt, with a seeded shuffle."""
    check_fractions(valid_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    parts = {s: [] for s in SPLITS}
    for _, group in frame.groupby("prompt", sort=False):
        idx = group.index.to_numpy()[rng.permutation(len(group))]
        n_valid = int(round(len(idx) * valid_fraction))
        n_test = int(round(len(idx) * test_fraction))
        parts["valid"].append(idx[:n_valid])
        parts["test"].append(idx[n_valid:n_valid + n_test])
        parts["train"].append(idx[n_valid + n_test:])
    out = {s: frame.loc[np.sort(np.concatenate(parts[s]))].reset_index(drop=True) for s in SPLITS}
    return {s: f for s, f in out.items() if len(f) or s == "train"}


@dataclass
class Tables:
    """What :func:`read_splits` found: checked frames per split and what the layout declares.

    Args:
        frames (dict[str, pd.DataFrame]): per split, the columns of :func:`normalize` plus ``_file``.
        scores (ScoreColumns): the score columns, parsed once from ``--score-column``.
        score_column (str): the user's name of the score column(s) (for messages).
        ranges (dict[str, tuple[float, float]]): ranges declared by the layout and ``--score-ranges``.
        step (float | None): the layout's rounding step.
        trait_ranges (dict): ``{trait: {prompt or "*": (min, max)}}`` from a ranges file's ``trait`` column.
        trait_steps (dict): ``{trait: step}`` from that file's ``step`` column.
        prompt_candidates (dict): without a prompt column, the columns whose values repeat like prompt ids.
        implicit_prompt (bool): a file had no prompt column, so its rows share the prompt ``"0"`` that no one named.
    """

    frames: dict[str, pd.DataFrame]
    scores: ScoreColumns = ScoreColumns()
    score_column: str = "score"
    ranges: dict = field(default_factory=dict)
    step: float | None = None
    trait_ranges: dict = field(default_factory=dict)
    trait_steps: dict = field(default_factory=dict)
    prompt_candidates: dict = field(default_factory=dict)
    implicit_prompt: bool = False


def read_splits(data, columns: Columns, *, layout: str = "table", encoding: str | None = None,
                valid_fraction: float = 0.1, test_fraction: float = 0.1, split_seed: int = 1,
                keep_prompts: str | None = None, ranges_file=None, whole_file_as: str | None = None,
                sheet: str | None = None) -> Tables:
    """Read, map and check the data named by ``data`` (``None``: the embedded demo data).

    A folder gives its ``train``/``valid``/``test`` tables; a single table is split per prompt by
    ``valid_fraction``/``test_fraction``, or, with ``whole_file_as``, read whole as that split
    (for evaluation); ``sheet`` (``--sheet``) names the sheet of .xlsx tables. ``keep_prompts`` (``--prompts``, comma separated) drops the other prompts' rows. A
    ``ranges_file`` naming prompts that data to train on does not hold, while one of its prompts has no declared
    range, is refused (:func:`scorelib.data.scores.check_named_prompts`).

    Returns:
        Tables: checked frames (unique keys across splits) and the declared ranges and step.
    """
    spec = LAYOUTS.get(layout)
    if spec is None:
        raise OptionError(f"--layout {layout!r}: unknown; choose one of {', '.join(LAYOUTS)}")
    if data is None and columns.scores.traits:
        raise OptionError(f"--score-column {columns.score}: the embedded demo data has one score; for a demo with "
                          f"traits, write one with scorelib.data.demo.write_demo_traits(folder) and train on that folder")
    if data is None:  # the embedded demo data, generated when asked for
        from scorelib.data import demo

        frames = {s: f.assign(_row=np.arange(2, len(f) + 2), _file=f"demo {s}")[COLUMNS + ["_row", "_file"]]
                  for s, f in demo.load_demo().items()}
        tables = Tables(frames, ranges=dict(demo.DEMO_RANGES), step=demo.DEMO_STEP)
    else:
        tables = _read_files(Path(data), columns, spec, encoding, whole_file_as, sheet)
        if "all" in tables.frames:
            tables.frames = split_frame(tables.frames.pop("all"), valid_fraction, test_fraction, split_seed)
    every = sorted(set().union(*(f["prompt"] for f in tables.frames.values())), key=natural_key)
    if keep_prompts:
        _keep_prompts(tables.frames, keep_prompts, need_train=whole_file_as is None)
    check_unique_keys(tables.frames)
    if ranges_file and has_trait_column(ranges_file):
        tables.trait_ranges, tables.trait_steps = read_trait_ranges(ranges_file, tables.scores.traits)
    elif ranges_file:
        tables.ranges.update(read_ranges(ranges_file))
    if ranges_file and whole_file_as in (None, "train"):  # data to train on (evaluation takes the model's ranges):
        # a file naming prompts the data does not hold, while a prompt has no range, is refused
        named = {*tables.ranges, *(p for r in tables.trait_ranges.values() for p in r)}
        kept = sorted(set().union(*(f["prompt"] for f in tables.frames.values())), key=natural_key)
        uncovered = [p for p in kept if p not in tables.ranges and not any(
            p in r or "*" in r for r in tables.trait_ranges.values())]
        check_named_prompts(ranges_file, sorted(named, key=natural_key), every, uncovered, tables.prompt_candidates)
    warn_lookalikes(tables.frames, every)
    return tables


def warn_lookalikes(frames: dict, prompts: list[str]) -> None:
    """Warn of prompt ids that differ only in their Unicode form (``café`` composed and decomposed: two prompts),
    and of texts of the valid or test split found word for word in train (a leak that makes their figures too good)."""
    forms: dict[str, list[str]] = {}
    for pid in prompts:
        forms.setdefault(unicodedata.normalize("NFC", pid), []).append(pid)
    for same in (ids for ids in forms.values() if len(ids) > 1):
        logger.warning("prompt ids %s differ only in their Unicode form (NFC/NFD), so they are %d prompts; write them "
                       "alike if they are one", " and ".join(ascii(p) for p in same), len(same))
    seen = set(frames["train"]["text"].str.strip()) if "train" in frames else set()
    for split in ("valid", "test"):
        if split in frames and seen and (hit := frames[split]["text"].str.strip().isin(seen)).any():
            keys = frames[split].loc[hit, "key"].tolist()
            logger.warning("%s: %d text(s) also in train, word for word (keys %s%s): its figures will be too good; "
                           "drop them, or split by text", split, len(keys), ", ".join(keys[:5]),
                           " ..." if len(keys) > 5 else "")


def _read_files(path: Path, columns: Columns, spec: dict, encoding, whole_file_as, sheet=None) -> Tables:
    if not path.exists():
        raise MissingFileError(f"data {path}: no such file or folder")
    files = find_split_files(path, need_train=whole_file_as is None) if path.is_dir() else {whole_file_as or "all": path}
    frames, score_column, candidates, implicit = {}, "score", {}, False
    for split, file in files.items():
        raw = read_table(file, encoding, spec.get("encoding_fallback"), sheet=sheet)
        names = columns.resolve(raw.columns, spec)
        frames[split] = normalize(raw, file, names, scores=columns.scores).assign(_file=str(file))
        score_column, implicit = names["score"], implicit or names["prompt"] is None
        if names["prompt"] is None and not candidates:  # one prompt: say which column might hold prompt ids
            used = [*names.values(), *columns.scores.user_columns(score_column)]
            candidates = prompt_column_candidates(raw, [c for c in used if c])
            if candidates:
                logger.warning("%s: no prompt column (--prompt-column), so every row is prompt '0'%s", file,
                               candidates_hint(candidates))
    return Tables(frames, scores=columns.scores, score_column=score_column, ranges=dict(spec.get("ranges", {})),
                  step=spec.get("step"), prompt_candidates=candidates, implicit_prompt=implicit)


def _keep_prompts(frames: dict, keep: str, need_train: bool) -> None:
    ids = [p.strip() for p in keep.split(",") if p.strip()]
    for split, frame in frames.items():
        mask = frame["prompt"].isin(ids)
        logger.info("%s: --prompts keeps %d of %d rows (%d rows of other prompts left out)",
                    split, int(mask.sum()), len(frame), int((~mask).sum()))
        frames[split] = frame[mask].reset_index(drop=True)
    reference = frames["train"] if need_train else pd.concat(frames.values())
    unknown = sorted(set(ids) - set(reference["prompt"]), key=natural_key)
    if unknown:
        raise OptionError(f"--prompts: {', '.join(unknown)} not found in the {'train ' if need_train else ''}data")


def check_unique_keys(frames: dict) -> None:
    """Refuse a key that occurs in two splits (within one file :func:`normalize` already refused it)."""
    seen = {}
    for split, frame in frames.items():
        where = frame["_file"] if "_file" in frame else [split] * len(frame)
        for key, row, name in zip(frame["key"], frame["_row"], where):
            if key in seen:
                raise DataError(f"key {key!r} appears in {seen[key]} and in {name} (row {row}); keys must be unique")
            seen[key] = f"{name} (row {row})"
