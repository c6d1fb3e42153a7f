"""Inputs for ETS's ``rsmeval``, so that RSMTool's own report runs on scorelib's predictions unchanged.

fairseq has no counterpart. ``rsmeval CONFIG.json OUTPUT_DIR`` (RSMTool 12, ``pip install rsmtool`` in
a venv of its own) reads a predictions table and a JSON config; :func:`write_rsmeval` writes one pair per
trait, or per trait and prompt where prompts have different score ranges (rsmeval trims to one range).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.errors import OptionError
from scorelib.writers import write_json, write_table


def _name(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", "_".join(str(p) for p in parts)).strip("_")


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
    written = []
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
        for prompt, part in parts:
            lo, hi = view.ranges[part["prompt"].iloc[0]]
            exp = _name("scorelib", tag, trait or "", prompt or "")
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
