"""What an ONNX export costs in agreement: PyTorch, ONNX fp32 and ONNX int8 on the demo data's test split.

Exports the save dir (``--save-dir``, default ``checkpoints/demo``, what ``make demo`` trains) twice
(``scorelib-export``, fp32 and ``--quantize int8``) into a temporary folder, scores the 270 test answers with each
(``Scorer.predict``, prompt by prompt) and prints per runtime QWK (mean of per-prompt), Pearson (pooled over
prompts), per-prompt QWK, and against fp32 the largest and mean change of a score as a share of its prompt's range
and how many rounded scores changed. The figures in docs/scoring.md come from this script.

    python bench/bench_export_quality.py [--save-dir checkpoints/demo]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def predict_split(scorer, frame: pd.DataFrame) -> np.ndarray:
    """One prediction per row of ``frame`` (single score), in its order."""
    out = np.full(len(frame), np.nan)
    for prompt in pd.unique(frame["prompt"]):
        rows = np.flatnonzero((frame["prompt"] == prompt).to_numpy())
        out[rows] = np.asarray(scorer.predict(frame["text"].iloc[rows].tolist(), prompt=prompt)["pred"]).ravel()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--save-dir", default="checkpoints/demo")
    opts = p.parse_args()
    import scorelib
    from scorelib.data import demo
    from scorelib.export.onnx import export
    from scorelib.metrics import compute_metrics

    test = demo.load_demo("test")
    prompts = test["prompt"].tolist()
    with tempfile.TemporaryDirectory(prefix="scorelib-bench-export-") as tmp:
        scorers = {"pytorch fp32": scorelib.load(opts.save_dir, device="cpu")}
        for quantize in (None, "int8"):
            out = Path(tmp) / (quantize or "fp32")
            export(opts.save_dir, out, quantize=quantize)
            scorers[f"onnx {quantize or 'fp32'}"] = scorelib.load(out)
        table = scorers["pytorch fp32"].table
        span = np.array([table.ranges[q][1] - table.ranges[q][0] for q in prompts])
        rows, preds = [], {}
        for name, scorer in scorers.items():
            pred = predict_split(scorer, test)
            rounded = table.round(pred[:, None], prompts)[:, 0]
            preds[name] = (pred, rounded)
            metrics = compute_metrics(prompts, test["score"].to_numpy(), pred, rounded, table)
            change = np.abs(pred - preds["onnx fp32"][0]) / span if "onnx fp32" in preds else np.full(len(pred), np.nan)
            rows.append({"runtime": name, "QWK (mean of per-prompt)": round(metrics["overall"]["qwk"], 4),
                         "Pearson (pooled)": round(metrics["overall"]["pearson"], 4),
                         **{f"QWK {q}": round(m["qwk"], 4) for q, m in metrics["per_prompt"].items()},
                         "max change / range": float(np.nanmax(change)) if np.isfinite(change).any() else None,
                         "mean change / range": float(np.nanmean(change)) if np.isfinite(change).any() else None,
                         "rounded changed": int((rounded != preds["onnx fp32"][1]).sum()) if "onnx fp32" in preds
                         else None})
        pt = preds["pytorch fp32"][0]
        rows[0].update({"max change / range": float(np.max(np.abs(pt - preds["onnx fp32"][0]) / span)),
                        "rounded changed": int((preds["pytorch fp32"][1] != preds["onnx fp32"][1]).sum())})
    print(f"{len(test)} demo test answers, {opts.save_dir}; changes against ONNX fp32")
    print(pd.DataFrame(rows).to_string(index=False))
    common.save_result("export_quality", {"save_dir": str(opts.save_dir), "rows": rows, "machine": common.machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
