"""Reference figures from ETS's RSMTool for ``tests/test_report.py`` (run once, outside the project's venv).

RSMTool 12 pins numpy 1.26 and scikit-learn 1.4, so it lives in a venv of its own::

    python3 -m venv /work/rsm-venv && /work/rsm-venv/bin/pip install rsmtool==12.0.0
    /work/rsm-venv/bin/python tools/rsmtool_reference.py            # writes tests/data/rsmtool_reference/

It builds a small fixed table (seeded, synthetic: 200 responses on a 1-6 scale, a first human score
``h1``, a second ``h2`` on 150 of them, a continuous machine score ``machine`` and its rounding
``machine_round``, and a ``group`` of three levels whose machine scores drift differently), writes it as
``input.csv``, computes RSMTool's own figures on it with RSMTool's functions (``Analyzer.metrics_helper``,
``compute_metrics``, ``compute_metrics_by_group``, ``compute_degradation_and_disattenuated_correlations``,
``get_true_score_evaluations``, ``get_fairness_analyses``), then runs ``rsmeval`` itself on the table for
the figures it computes inline (score distributions, confusion matrices) and as a cross-check of the
rest, and writes them to ``expected.json``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "rsmtool_reference"


def make_table(seed: int = 21, n: int = 200) -> pd.DataFrame:
    """The fixed input: human scores h1, h2 (NaN on 50 rows), machine score, its rounding, a group."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    true = rng.normal(3.5, 1.0, size=n)
    h1 = np.clip(np.round(true + rng.normal(0, 0.6, n)), 1, 6)
    h2 = np.clip(np.round(true + rng.normal(0, 0.6, n)), 1, 6)
    h2[rng.permutation(n)[:50]] = np.nan
    drift = np.select([group == "a", group == "b"], [0.0, -0.35], 0.25)
    machine = np.clip(true + drift - 0.1 + rng.normal(0, 0.5, n), 1, 6).round(4)
    return pd.DataFrame({"key": [f"r{i:03d}" for i in range(n)], "prompt": "p1", "group": group,
                         "h1": h1, "h2": h2, "machine": machine, "machine_round": np.clip(np.round(machine), 1, 6)})


def series(s) -> dict:
    return {str(k): (None if pd.isna(v) else float(v)) for k, v in s.items()}


def run_rsmeval(table: pd.DataFrame) -> dict:
    """Run ``rsmeval`` (beside this Python) on the table; its score distribution, confusion matrices, eval rows."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table.rename(columns={"key": "spkitemid", "h1": "sc1", "h2": "sc2", "machine": "system"}).drop(
            columns="machine_round").to_csv(tmp / "pred.csv", index=False)
        config = {"experiment_id": "ref", "predictions_file": "pred.csv", "system_score_column": "system",
                  "human_score_column": "sc1", "second_human_score_column": "sc2", "id_column": "spkitemid",
                  "trim_min": 1, "trim_max": 6, "exclude_zero_scores": False, "subgroups": ["group"]}
        (tmp / "ref.json").write_text(json.dumps(config))
        subprocess.run([str(Path(sys.executable).parent / "rsmeval"), str(tmp / "ref.json"), str(tmp / "out")],
                       check=True, capture_output=True)
        out = tmp / "out" / "output"
        dist = pd.read_csv(out / "ref_score_dist.csv", index_col=0)
        conf = {name: pd.read_csv(out / f"ref_{name}.csv", index_col=0) for name in ("confMatrix", "confMatrix_h1h2")}
        evals = pd.read_csv(out / "ref_eval.csv", index_col=0)
        return {"score_dist": {c: dist[c].astype(float).tolist() for c in dist.columns},
                **{k: {"labels": [float(v) for v in f.index], "matrix": f.to_numpy().tolist()} for k, f in conf.items()},
                "eval": {kind: series(evals.loc[kind]) for kind in evals.index}}


def main() -> int:
    import rsmtool
    from rsmtool.analyzer import Analyzer
    from rsmtool.fairness_utils import get_fairness_analyses
    from rsmtool.utils.prmse import get_true_score_evaluations

    OUT.mkdir(parents=True, exist_ok=True)
    table = make_table()
    table.to_csv(OUT / "input.csv", index=False, lineterminator="\n")
    table = pd.read_csv(OUT / "input.csv")  # exactly what the test reads
    a = Analyzer()
    h1, raw, rnd = table["h1"], table["machine"], table["machine_round"]
    # RSMTool's column names: sc1/sc2 human scores, one column per kind of system score
    df = pd.DataFrame({"sc1": h1, "raw": raw, "raw_trim": raw, "raw_trim_round": rnd, "sc2": table["h2"]})
    hm, _, hh = a.compute_metrics(df, include_second_score=True)
    degradation, corr = a.compute_degradation_and_disattenuated_correlations(df)
    groups = df.drop(columns="sc2").assign(group=table["group"])
    by_group, _ = a.compute_metrics_by_group(groups, "group")
    # compute_metrics_by_group keeps a short list of figures; all of them per group come from metrics_helper with
    # the population (all rows) means and SDs, as compute_metrics_by_group passes them
    pop = {c: (groups[c].mean(), groups[c].std(ddof=1)) for c in ("sc1", "raw", "raw_trim_round")}
    per_group = {}
    for g, rows in groups.groupby("group"):
        per_group[str(g)] = {
            kind: series(a.metrics_helper(rows["sc1"], rows[kind], pop["sc1"][1], pop[kind][1], pop["sc1"][0],
                                          pop[kind][0], use_diff_std_means=True))
            for kind in ("raw", "raw_trim_round")}
    prmse = get_true_score_evaluations(df, ["raw"], ["sc1", "sc2"])
    fair = {}
    for kind in ("raw", "raw_trim_round"):
        _, container = get_fairness_analyses(groups.copy(), "group", kind, "sc1")
        frame = container["fairness_metrics_by_group"]
        fair[kind] = {name: {"r2": float(frame.loc["R2", col]), "p": float(frame.loc["sig", col])}
                      for name, col in (("osa", "Overall score accuracy"), ("osd", "Overall score difference"),
                                        ("csd", "Conditional score difference"))}
        fair[kind]["base_group"] = str(frame["base_category"].iloc[0])
    expected = {
        "rsmtool_version": rsmtool.__version__,
        "human_machine": {kind: series(hm.loc[kind]) for kind in ("raw", "raw_trim_round")},
        "human_human": series(hh.iloc[0]),
        "degradation": {kind: series(degradation.loc[kind]) for kind in ("raw", "raw_trim_round")},
        "disattenuated": {kind: series(corr.loc[kind]) for kind in ("raw", "raw_trim_round")},
        "by_group_short": {str(g): series(r) for g, r in by_group.iterrows()},
        "by_group": per_group,
        "prmse": series(prmse.loc["raw"]),
        "fairness": fair,
        "rsmeval": run_rsmeval(table),
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT / 'input.csv'} and {OUT / 'expected.json'} with rsmtool {rsmtool.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
