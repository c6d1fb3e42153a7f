"""``load_dataset(name)``: a real human-scored data set as a table in scorelib's columns, with its data card.

Where the data comes from, in this order:

1. a local copy: ``data_dir``, else ``$SCORELIB_DATA``, laid out as the project's ``../shared/data``
   (``mohler_sag/``, ``clear_readability/``, ``feedback_prize_ell/``);
2. the cache: ``cache_dir``, else ``$SCORELIB_CACHE``, else ``~/.cache/scorelib``;
3. a download of the upstream files, pinned to a commit and checked against their git blob ids
   (:mod:`scorelib.datasets.fetch`; ``$SCORELIB_DATA_URL`` replaces ``https://raw.githubusercontent.com``).

The first load of a set in a process prints its license and citation.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from scorelib.datasets import sets
from scorelib.datasets.fetch import fetch, shown
from scorelib.errors import MissingFileError, OptionError

logger = logging.getLogger(__name__)

NAMES = tuple(sets.SETS)
_noticed: set[str] = set()  # the sets whose license and citation this process has printed


@dataclass
class DataCard:
    """What a loaded table is: its source, how it was derived, how to cite it, its license and its row counts."""

    name: str
    title: str
    origin: str  # where this load read it from, in words
    local: bool  # read from a local copy (True) or the pinned upstream files (False)
    repository: str
    commit: str
    files: list
    url: str
    citation: str
    license: str
    derivation: str
    rows: dict  # read, kept, dropped (reason -> rows)
    columns: dict  # role -> column names: key, prompt, text, context, scores, groups, raters, other
    options: dict  # scorelib-train defaults for this set

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        dropped = "; ".join(f"{n:,} dropped: {why}" for why, n in self.rows["dropped"].items())
        cols = ", ".join(f"{role}: {', '.join(c) if isinstance(c, list) else c}" for role, c in self.columns.items()
                         if c)
        return "\n".join([
            f"{self.title} ('{self.name}')",
            f"  source:     {self.repository} at commit {self.commit} ({self.url})",
            f"  read from:  {self.origin}",
            f"  rows:       {self.rows['read']:,} read, {self.rows['kept']:,} kept" + (f"; {dropped}" if dropped else ""),
            f"  columns:    {cols}",
            f"  derivation: {self.derivation}",
            f"  license:    {self.license}",
            f"  citation:   {self.citation}"])


@dataclass
class Dataset:
    """A loaded data set: ``table`` (a DataFrame in scorelib's columns) and ``card`` (:class:`DataCard`)."""

    table: pd.DataFrame
    card: DataCard

    def __iter__(self):  # table, card = load_dataset(...)
        return iter((self.table, self.card))


def local_copy(spec: sets.DataSet, data_dir) -> Path | None:
    """The set's folder in a local copy, or None; a folder with some of the files missing is refused."""
    if data_dir is None:
        return None
    folder = Path(data_dir).expanduser() / spec.local_folder
    if not folder.is_dir():
        return None
    missing = [f for f in spec.local_files if not (folder / f).is_file()]
    if missing:
        raise MissingFileError(f"{folder}: a local copy of '{spec.name}' without {', '.join(missing)}; complete it, "
                               f"or unset SCORELIB_DATA to download the set")
    return folder


def columns_of(table: pd.DataFrame, spec: sets.DataSet) -> dict:
    scores = spec.options.get("score_column", "score").split(",")
    groups = [c for c in ("gender", "race_ethnicity", "ses", "grade", "category") if c in table.columns]
    raters = [c for c in ("grader1", "grader2") if c in table.columns]
    extra = [c for c in ("overall",) if c in table.columns]
    named = {"key", "prompt", "text", "context", *scores, *groups, *raters, *extra}
    return {"key": "key", "prompt": "prompt", "text": "text", "context": "context" if "context" in table else None,
            "scores": scores, "extra_scores": extra, "groups": groups, "raters": raters,
            "other": [c for c in table.columns if c not in named]}


def load_dataset(name: str, *, data_dir=None, cache_dir=None, download: bool = True, quiet: bool = False,
                 include_ignored: bool = False) -> Dataset:
    """A data set as a table in scorelib's columns, and its card.

    Args:
        name (str): ``"mohler"`` (2,273 short answers to 81 computer-science questions, scores 0-5), ``"clear"``
            (4,724 readability excerpts) or ``"ellipse"`` (3,911 English learners' essays, six traits 1-5).
        data_dir: a local copy laid out as ``../shared/data`` (default: ``$SCORELIB_DATA``); where given, the set
            must be there.
        cache_dir: the download cache (default: ``$SCORELIB_CACHE``, else ``~/.cache/scorelib``).
        download (bool): False refuses to download (a set neither local nor cached is then an error).
        quiet (bool): do not print the license and citation on the first load.
        include_ignored (bool): ``"mohler"`` only: keep the 169 answers to the 6 questions the paper left out
            (with a column ``ignored_in_paper``).

    Returns:
        Dataset: ``table`` (``key, prompt, text``, ``context`` where the set has one, ``score`` or the traits, then
        group and rater columns) and ``card`` (:class:`DataCard`); ``table, card = load_dataset(...)`` works too.
    """
    if name not in sets.SETS:
        raise OptionError(f"data set {name!r}: unknown; scorelib.datasets has {', '.join(NAMES)}")
    if include_ignored and name != "mohler":
        raise OptionError(f"include_ignored: only for 'mohler', not {name!r}")
    spec = sets.SETS[name]
    upstream_reader, local_reader, build = sets.READERS[name]
    local = local_copy(spec, data_dir if data_dir is not None else os.environ.get("SCORELIB_DATA") or None)
    if data_dir is not None and local is None:
        raise MissingFileError(f"{Path(data_dir) / spec.local_folder}: no local copy of '{name}' there")
    kwargs = {"include_ignored": include_ignored} if name == "mohler" else {}
    if local is not None:
        table, rows = build(local_reader(local), local, **kwargs)
        origin, files = f"a local copy ({shown(local)}): {spec.local_note}", [str(local / f) for f in spec.local_files]
    else:
        folder, origin = fetch(spec.source, cache_dir, allow_download=download)
        table, rows = build(upstream_reader(folder), folder, **kwargs)
        files = [spec.source.path(f) for f in spec.source.files]
    card = DataCard(name=name, title=spec.title, origin=origin, local=local is not None, repository=spec.source.repo,
                    commit=spec.source.commit, files=files, url=spec.source.page(), citation=spec.citation,
                    license=spec.license, derivation=spec.derivation if local is None else
                    f"{spec.local_note}; upstream: {spec.derivation}", rows=rows, columns=columns_of(table, spec),
                    options=dict(spec.options))
    if not quiet and name not in _noticed:
        _noticed.add(name)
        print(f"{spec.title}: {len(table):,} rows from {origin}\n  license: {spec.license}\n  please cite: "
              f"{spec.citation}", flush=True)
    return Dataset(table, card)
