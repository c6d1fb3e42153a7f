"""Inputs for ETS's ``rsmeval``, so that RSMTool's own report runs on scorelib's predictions unchanged.

fairseq has no counterpart. ``rsmeval CONFIG.json OUTPUT_DIR`` (RSMTool 12, ``pip install rsmtool`` in
a venv of its own) reads a predictions table and a JSON config; :func:`write_rsmeval` writes one pair per
trait, or per trait and prompt where prompts have different score ranges (rsmeval trims to one range).
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.errors import OptionError
from scorelib.writers import write_json, write_table

logger = logging.getLogger(__name__)


def _name(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", "_".join(str(p) for p in parts)).strip("_")


def unique_names(ids: list[tuple]) -> dict[tuple, str]:
    """A file name per ``(tag, trait, prompt)``: :func:`_name`'s, and where two ids give the same one (``a/b`` and
    ``a.b``, ``é`` and ``è``), each of those ends in its id's SHA-1 (8 hex digits), so that no file is overwritten."""
    plain = {i: _name("scorelib", *(p or "" for p in i)) for i in ids}
    count = Counter(plain.values())
    return {i: n if count[n] == 1 else f"{n}_{hashlib.sha1(repr(i).encode('utf-8')).hexdigest()[:8]}"
            for i, n in plain.items()}


def write_rsmeval(frame: pd.DataFrame, table, out_dir, groups: list[str], second: list[str], tag: str) -> list[Path]:
    """Write ``{experiment}.csv`` (columns ``spkitemid, prompt, sc1, [sc2], system`` and the group columns) and
    ``{experiment}.json`` (rsmeval's config) for each trait, into ``out_dir``.

    Args:
        frame (pd.DataFrame): the result file's text columns with the group and second-score columns joined.
        table (PromptTable): ranges per prompt (and per trait).
        out_dir (str | os.PathLike): created if needed.
        groups (list[str]): group columns, passed as rsmeval's ``subgroups``.
        second (list[str]): second-score columns, one per trait (or none).
        tag (str): ``{ckpt}-{split}``, part of each experiment id.

    Returns:
        list[pathlib.Path]: the files written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OptionError(f"--rsmeval-dir {out}: is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written, jobs = [], []
    traits = list(table.traits) or [None]
    for k, trait in enumerate(traits):
        view = table.for_trait(trait) if trait else table
        suffix = f"_{trait}" if trait else ""
        rows = pd.DataFrame({"spkitemid": frame["key"].astype(str), "prompt": frame["prompt"].astype(str),
                             "sc1": pd.to_numeric(frame["gold" + suffix], errors="coerce")})
        if second:
            rows["sc2"] = pd.to_numeric(frame[second[k]].astype(str).str.strip().replace("", np.nan), errors="coerce")
        rows["system"] = pd.to_numeric(frame["pred" + suffix], errors="coerce")
        for col in groups:
            rows[col] = frame[col].astype(str).str.strip().replace("", "unknown")
        rows = rows[rows["sc1"].notna()]
        ranges = {view.ranges[p] for p in rows["prompt"].unique()}
        parts = [(None, rows)] if len(ranges) == 1 else [(p, r) for p, r in rows.groupby("prompt", sort=True)]
        jobs += [(k, trait, view, prompt, part) for prompt, part in parts]
    names = unique_names([(tag, trait, prompt) for _, trait, _, prompt, _ in jobs])
    for k, trait, view, prompt, part in jobs:
        lo, hi = view.ranges[part["prompt"].iloc[0]]
        exp = names[(tag, trait, prompt)]
        if exp != _name("scorelib", tag, trait or "", prompt or ""):
            logger.warning("--rsmeval-dir: %s holds%s prompt %r (its name alone would be shared with another "
                           "prompt's file)", f"{exp}.csv", f" trait {trait!r}," if trait else "", prompt)
        config = {"experiment_id": exp, "description": f"scorelib predictions ({tag}"
                  + (f", trait {trait}" if trait else "") + (f", prompt {prompt}" if prompt else "") + ")",
                  "predictions_file": f"{exp}.csv", "system_score_column": "system", "human_score_column": "sc1",
                  "id_column": "spkitemid", "trim_min": float(lo), "trim_max": float(hi),
                  "exclude_zero_scores": False}
        if second:
            config["second_human_score_column"] = "sc2"
        if groups:
            config["subgroups"] = list(groups)
        csv, cfg = out / f"{exp}.csv", out / f"{exp}.json"
        write_table(part, csv)  # keys with a comma, quote or line break: quoted
        write_json(config, cfg)
        written += [csv, cfg]
    return written
