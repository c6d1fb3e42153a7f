"""Tests for scorelib.metrics and scorelib.results: rescaling, metrics, result files and the notes' evaluate()."""
import json
import math
import warnings

import numpy as np
import openpyxl
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import cohen_kappa_score

from scorelib.metrics import compute_metrics as array_metrics
from scorelib.metrics import flat_metrics
from scorelib.results import evaluate, frame_metrics as compute_metrics, results_frame, write_results
import scorelib
from scorelib.data.prompts import PromptTable


@pytest.fixture(autouse=True)
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def two_prompts(step=1.0):
    return PromptTable(ids=["a", "b"], ranges={"a": (0.0, 3.0), "b": (1.0, 6.0)}, step=step)


def frame_of(table, prompts, gold01, pred01, texts=None):
    """A results frame from gold and predictions both in [0, 1] (gold is unscaled here, as a test input)."""
    keys = [f"k{i}" for i in range(len(prompts))]
    gold = table.unscale(gold01, prompts)
    return results_frame(keys, prompts, gold, pred01, texts or [""] * len(prompts), table)


def test_rescale_per_prompt():
    f = frame_of(two_prompts(), ["a", "b"], [1.0, 0.0], [0.5, 0.5])
    assert list(f.columns) == ["key", "prompt", "gold", "pred", "pred_rounded", "text"]
    assert f["pred"].tolist() == [1.5, 3.5]
    assert f["gold"].tolist() == [3.0, 1.0]
    assert list(f["key"]) == ["k0", "k1"]


def test_rounding_step_and_clipping():
    table = two_prompts(step=0.5)
    f = frame_of(table, ["a", "a", "b"], [0, 0, 0], [0.1, 0.9, 0.56])  # 0.3, 2.7, 3.8
    assert f["pred_rounded"].tolist() == [0.5, 2.5, 4.0]
    f = frame_of(two_prompts(step=1.0), ["a", "b"], [0, 0], [0.9, 0.33])  # 2.7, 2.65
    assert f["pred_rounded"].tolist() == [3.0, 3.0]
    # out-of-range outputs are clipped; with step None only clipping happens
    f = frame_of(PromptTable(["a"], {"a": (0.0, 3.0)}), ["a", "a", "a"], [0, 0, 0], [-0.1, 0.37, 1.2])
    np.testing.assert_allclose(f["pred_rounded"], [0.0, 1.11, 3.0])


def test_unlabeled_rows_and_length_mismatch():
    f = frame_of(two_prompts(), ["a", "b", "b"], [float("nan"), 0.2, 0.8], [0.5, 0.1, 0.9])
    assert math.isnan(f["gold"][0])
    m = compute_metrics(f, two_prompts())
    assert m["n"] == 2 and m["n_unlabeled"] == 1 and m["n_rows"] == 3
    assert m["per_prompt"]["a"]["n"] == 0 and m["per_prompt"]["a"]["undefined"]["rmse"] == "no labeled rows"
    with pytest.raises(ValueError):
        results_frame(["k"], ["a", "b"], [0, 0], [0, 0], ["", ""], two_prompts())


def known_case():
    table = two_prompts(step=1.0)
    prompts = ["a"] * 6 + ["b"] * 6
    gold_a, pred_a = [0, 1, 2, 3, 1, 2], [0.2, 1.4, 1.6, 2.9, 0.7, 2.6]
    gold_b, pred_b = [1, 2, 4, 6, 5, 3], [1.4, 2.2, 3.6, 5.8, 4.1, 3.3]
    gold01 = table.scale(gold_a + gold_b, prompts)
    pred01 = table.scale(pred_a + pred_b, prompts)
    return table, frame_of(table, prompts, gold01, pred01), (gold_a, pred_a, gold_b, pred_b)


def test_metrics_match_sklearn_and_scipy():
    table, f, (gold_a, pred_a, gold_b, pred_b) = known_case()
    m = compute_metrics(f, table)
    json.dumps(m, allow_nan=False)
    qa = cohen_kappa_score(gold_a, np.round(pred_a).astype(int), weights="quadratic")
    qb = cohen_kappa_score(np.array(gold_b) - 1, np.round(pred_b).astype(int) - 1, weights="quadratic",
                           labels=np.arange(6))
    assert m["per_prompt"]["a"]["qwk"] == pytest.approx(qa)
    assert m["per_prompt"]["b"]["qwk"] == pytest.approx(qb)
    assert m["overall"]["qwk"] == pytest.approx((qa + qb) / 2)
    assert m["overall"]["n_qwk_prompts"] == 2
    gold, pred = np.array(gold_a + gold_b, float), np.array(pred_a + pred_b)
    pooled = cohen_kappa_score(gold.astype(int), np.clip(np.round(pred), [0] * 6 + [1] * 6, [3] * 6 + [6] * 6)
                               .astype(int), weights="quadratic", labels=np.arange(7))
    assert m["overall"]["qwk_pooled"] == pytest.approx(pooled)
    assert m["overall"]["pearson"] == pytest.approx(pearsonr(gold, pred).statistic)
    assert m["overall"]["spearman"] == pytest.approx(spearmanr(gold, pred).statistic)
    assert m["overall"]["rmse"] == pytest.approx(np.sqrt(np.mean((gold - pred) ** 2)))
    assert m["per_prompt"]["a"]["pearson"] == pytest.approx(pearsonr(gold_a, pred_a).statistic)
    assert m["undefined"] == {}
    flat = flat_metrics(m)
    assert set(flat) == {"qwk", "qwk_pooled", "pearson", "spearman", "rmse", "n"} and flat["n"] == 12


def test_single_gold_value_prompt_is_undefined_and_left_out():
    table = two_prompts(step=1.0)
    prompts = ["a"] * 4 + ["b"] * 3
    gold = table.scale([0, 1, 2, 3, 2, 2, 2], prompts)
    pred = table.scale([0.1, 1.2, 1.8, 2.6, 1.5, 2.4, 3.1], prompts)
    m = compute_metrics(frame_of(table, prompts, gold, pred), table)
    b = m["per_prompt"]["b"]
    assert b["qwk"] is None and "single gold value" in b["undefined"]["qwk"]
    assert b["pearson"] is None and "pearson" in b["undefined"] and b["rmse"] is not None
    assert m["overall"]["n_qwk_prompts"] == 1
    assert m["overall"]["qwk"] == pytest.approx(m["per_prompt"]["a"]["qwk"])


def test_constant_predictions_and_single_row():
    table = two_prompts(step=1.0)
    prompts = ["a"] * 4 + ["b"]
    m = compute_metrics(frame_of(table, prompts, table.scale([0, 1, 2, 3, 4], prompts), [0.5] * 5), table)
    a = m["per_prompt"]["a"]
    assert a["pearson"] is None and a["undefined"]["pearson"] == "constant predictions"
    assert a["qwk"] == pytest.approx(0.0)  # constant predictions: kappa is defined and 0
    assert m["per_prompt"]["b"]["undefined"]["qwk"] == "fewer than 2 labeled rows"


def test_continuous_target_has_no_qwk():
    table = two_prompts(step=None)
    prompts = ["a", "a", "b", "b"]
    m = compute_metrics(frame_of(table, prompts, [0.1, 0.9, 0.2, 0.7], [0.2, 0.8, 0.3, 0.6]), table)
    assert m["step"] is None and m["overall"]["qwk"] is None and m["overall"]["qwk_pooled"] is None
    assert "continuous" in m["undefined"]["qwk"] and "continuous" in m["per_prompt"]["a"]["undefined"]["qwk"]
    assert m["overall"]["pearson"] is not None


TRICKY = ["=1+1", "+SUM(A1)", "-2", "@x", '=HYPERLINK("http://x")',
          'comma, "quotes"\nnew line 中文评分', "bell\x07here", "plain"]


def test_write_results_files_xlsx_and_csv(tmp_path):
    table = two_prompts(step=1.0)
    n = len(TRICKY)
    prompts = ["a", "b"] * (n // 2)
    keys = ["=k0", "-k1"] + [f"key{i}" for i in range(2, n)]
    f = frame_of(table, prompts, np.linspace(0, 1, n), np.linspace(0.1, 0.9, n), TRICKY)
    f["key"] = keys
    m = compute_metrics(f, table)
    paths = write_results(f, m, table, tmp_path / "out", "save/checkpoint_best.pt", "valid")
    assert {k: p.name for k, p in paths.items()} == {
        "xlsx": "result-checkpoint_best-valid.xlsx", "csv": "result-checkpoint_best-valid.csv",
        "metrics": "metrics-checkpoint_best-valid.json", "plot": "plot-checkpoint_best-valid.png"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths.values())

    csv = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert list(csv["key"]) == keys and list(csv["text"]) == TRICKY and len(csv) == n

    saved = json.loads(paths["metrics"].read_text(encoding="utf-8"))
    assert saved["xlsx_replaced_control_chars"] == 1 and saved["n"] == n

    ws = openpyxl.load_workbook(paths["xlsx"]).active
    rows = list(ws.iter_rows())
    assert [c.value for c in rows[0]] == list(f.columns) and rows[0][0].font.bold and ws.freeze_panes == "A2"
    assert len(rows) == n + 1
    for i, row in enumerate(rows[1:]):
        key, prompt, gold, pred, _, text = row
        assert key.data_type == "s" and key.value == keys[i]
        assert prompt.data_type == "s" and prompt.value == prompts[i]
        assert text.data_type == "s"
        assert text.value == TRICKY[i].replace("\x07", "\ufffd")
        assert gold.data_type == "n" and gold.number_format == "0.00"
        assert pred.value == pytest.approx(f["pred"][i])


def test_results_path_is_a_file(tmp_path):
    table = two_prompts()
    f = frame_of(table, ["a", "b"], [0.0, 1.0], [0.2, 0.8])
    target = tmp_path / "results"
    target.write_text("not a folder")
    with pytest.raises(scorelib.OptionError, match="results"):
        write_results(f, compute_metrics(f, table), table, target, "checkpoint_last", "test")


def test_evaluate_two_batches(tmp_path):
    table = two_prompts(step=1.0)

    def batch(keys, prompts, score, out):
        sample = {"key": keys, "prompt": prompts, "text": [f"text {k}" for k in keys],
                  "score": torch.tensor(score, dtype=torch.float64), "net_input": {}}
        return torch.tensor(0.1), sample, {"encoder_out": torch.tensor(out)}

    triples = [batch(["x1", "x2"], ["a", "b"], [0.0, 2.0], [0.5, 0.5]),
               batch(["x3", "x4", "x5"], ["a", "b", "a"], [3.0, float("nan"), 2.0], [0.9, 0.4, 0.6])]
    frame, metrics = evaluate(iter(triples), "checkpoint_best.pt", table, tmp_path, "valid")
    assert list(frame["key"]) == ["x1", "x2", "x3", "x4", "x5"]
    np.testing.assert_allclose(frame["pred"], [1.5, 3.5, 2.7, 3.0, 1.8], rtol=1e-6)
    assert frame["gold"].tolist()[:3] == [0.0, 2.0, 3.0] and math.isnan(frame["gold"][3])  # exactly as given
    assert metrics["n"] == 4 and metrics["n_unlabeled"] == 1
    assert (tmp_path / "result-checkpoint_best-valid.xlsx").is_file()
    assert (tmp_path / "metrics-checkpoint_best-valid.json").is_file()


def test_gold_is_kept_exactly_and_metrics_match_the_libraries_with_ties(tmp_path):
    """Gold scores that float32 would blur (0.1, 4.7, 1e-7 steps) come back from the files exactly as given,
    and every metric equals scikit-learn's / SciPy's on those exact values, ties included."""
    table = PromptTable(ids=["p"], ranges={"p": (0.0, 10.0)}, step=0.1)
    gold = np.array([0.1, 0.1, 4.7, 4.7, 4.7, 9.3, 2.2, 2.2, 7.0000001, 5.3])
    pred01 = np.array([0.02, 0.05, 0.47, 0.48, 0.47, 0.9, 0.3, 0.2, 0.6, 0.5])
    frame = results_frame([f"k{i}" for i in range(10)], ["p"] * 10, gold, pred01, ["t"] * 10, table)
    metrics = compute_metrics(frame, table)
    paths = write_results(frame, metrics, table, tmp_path, "checkpoint_best.pt", "test")
    back = pd.read_csv(paths["csv"])
    assert back["gold"].tolist() == gold.tolist()  # exact, not within a tolerance
    cells = [row[2].value for row in openpyxl.load_workbook(paths["xlsx"]).active.iter_rows(min_row=2)]
    assert cells == gold.tolist()
    pred = back["pred"].to_numpy()
    saved = json.loads(paths["metrics"].read_text())["overall"]
    assert saved["spearman"] == spearmanr(gold, pred).statistic  # average ranks of the tied gold values
    assert saved["pearson"] == pearsonr(gold, pred).statistic
    assert saved["rmse"] == pytest.approx(np.sqrt(np.mean((gold - pred) ** 2)), rel=1e-15)
    labels = np.round(gold / 0.1).astype(int), np.round(back["pred_rounded"].to_numpy() / 0.1).astype(int)
    assert saved["qwk"] == cohen_kappa_score(*labels, weights="quadratic", labels=np.arange(0, 101))
    direct = array_metrics(["p"] * 10, gold, pred, back["pred_rounded"], table)["overall"]
    assert {k: direct[k] for k in ("qwk", "pearson", "spearman")} == {k: saved[k] for k in ("qwk", "pearson", "spearman")}


# ---------------------------------------------------------------- the one QWK and the one pair-metrics function
def covariance_kappa(h, m):
    """RSMTool's form, written independently: 2 cov / (var h + var m + (mean h - mean m)^2), population moments."""
    h, m = np.asarray(h, float), np.asarray(m, float)
    return 2 * np.cov(h, m, ddof=0)[0, 1] / (np.var(h) + np.var(m) + (h.mean() - m.mean()) ** 2)


@pytest.mark.parametrize("lo, k", [(0, 2), (0, 3), (1, 6), (-3, 5), (0, 11), (10, 101)])
def test_qwk_equals_sklearn_bit_for_bit_on_integer_labels(lo, k):
    """Integer labels: exactly cohen_kappa_score(weights="quadratic", labels=range), one row or (B, N) at once."""
    from scorelib.metrics import qwk
    rng = np.random.default_rng(k)
    labels = np.arange(lo, lo + k)
    for n in (2, 7, 50, 400):
        h = rng.integers(lo, lo + k, n)
        m = np.clip(h + rng.integers(-2, 3, n), lo, lo + k - 1) if n % 2 else rng.integers(lo, lo + k, n)
        if len(np.unique(h)) < 2:
            h[0], h[1] = lo, lo + k - 1
        expected = cohen_kappa_score(h, m, weights="quadratic", labels=labels)
        assert qwk(h, m, (lo, lo + k - 1)) == expected
        assert qwk(h, m, (lo - 2, lo + k + 3)) == pytest.approx(expected, abs=1e-12)  # a wider range: same kappa
        assert qwk(h, m) == pytest.approx(expected, abs=1e-12)  # default range: the data's
        idx = rng.integers(0, n, (6, n))
        many = qwk(h[idx], m[idx], (lo, lo + k - 1))
        assert many.shape == (6,)
        for row, value in zip(idx, many):
            if len(np.unique(h[row])) > 1 or len(np.unique(m[row])) > 1:
                assert value == cohen_kappa_score(h[row], m[row], weights="quadratic", labels=labels)


def test_qwk_equals_the_covariance_form_on_scores():
    """Float scores (half points, unrounded) use RSMTool's covariance form; on integer scores both forms agree."""
    from scorelib.metrics import qwk
    rng = np.random.default_rng(5)
    for _ in range(20):
        h = rng.integers(0, 9, 60) / 2  # half points
        m = np.round(h * 2 + rng.normal(0, 1.5, 60)).clip(0, 8) / 2
        cont = h + rng.normal(0, 0.7, 60)
        assert qwk(h, m) == pytest.approx(covariance_kappa(h, m), rel=1e-12)
        assert qwk(h, cont) == pytest.approx(covariance_kappa(h, cont), rel=1e-12)
        labels = (h * 2).astype(int), (m * 2).astype(int)
        assert qwk(h, m) == pytest.approx(cohen_kappa_score(*labels, weights="quadratic", labels=np.arange(9)),
                                          abs=1e-12)
    many = qwk(np.stack([h, h[::-1]]), np.stack([cont, cont[::-1]]))
    np.testing.assert_allclose(many, [covariance_kappa(h, cont), covariance_kappa(h[::-1], cont[::-1])], rtol=1e-12)


def test_qwk_undefined_cases():
    from scorelib.metrics import qwk
    assert math.isnan(qwk(np.array([], int), np.array([], int), (0, 3)))  # no rows
    assert math.isnan(qwk(np.array([], float), np.array([], float)))
    assert math.isnan(qwk([2, 2, 2], [2, 2, 2]))  # one same constant: 0/0
    assert math.isnan(qwk([2.0, 2.0], [2.0, 2.0]))
    # one gold value with other predictions: 0 whatever the form (the result files call it undefined, see below)
    assert qwk([1, 1, 1, 1], [0, 1, 2, 3], (0, 3)) == 0.0 and qwk([1.0, 1, 1, 1], [0.0, 1, 2, 3]) == 0.0
    assert qwk([0, 1, 2, 3], [2, 2, 2, 2], (0, 3)) == pytest.approx(0.0, abs=1e-15)  # constant predictions: 0
    with pytest.raises(ValueError, match="outside label_range"):
        qwk([0, 1, 4], [0, 1, 2], (0, 3))


def test_pair_metrics_against_scipy_sklearn_and_formulas():
    """Every figure of one set of rows against an independent reference; (B, N) rows equal one call per row."""
    from sklearn.metrics import r2_score
    from scorelib.metrics import FIGURES, pair_metrics
    rng = np.random.default_rng(3)
    h = rng.integers(0, 5, 80).astype(float)
    m = h + rng.normal(0, 0.8, 80)
    rounded = np.clip(np.round(m), 0, 4)
    v = pair_metrics(h, m, rounded=rounded, nearest=np.clip(np.floor(m + 0.5), 0, 4), figures=FIGURES)
    assert list(v) == list(FIGURES)
    assert v["exact_pct"] == 100 * np.mean(rounded == h) and v["adjacent_pct"] == 100 * np.mean(abs(rounded - h) <= 1)
    assert v["qwk"] == pytest.approx(cohen_kappa_score(h.astype(int), rounded.astype(int), weights="quadratic",
                                                       labels=np.arange(5)), abs=1e-12)
    assert v["pearson"] == pearsonr(h, m).statistic and v["spearman"] == spearmanr(h, m).statistic
    assert v["rmse"] == np.sqrt(np.mean((m - h) ** 2)) and v["r2"] == pytest.approx(r2_score(h, m), rel=1e-12)
    assert v["smd"] == pytest.approx((m.mean() - h.mean()) / h.std(ddof=1), rel=1e-12)
    pooled = pair_metrics(h, m, figures=["smd"], pooled_smd=True)["smd"]
    assert pooled == pytest.approx((m.mean() - h.mean()) / np.sqrt((h.var(ddof=1) + m.var(ddof=1)) / 2), rel=1e-12)
    # integer labels: QWK from them, scikit-learn's value exactly
    labels = {"gold_labels": h.astype(int), "pred_labels": rounded.astype(int), "label_range": (0, 6)}
    assert pair_metrics(h, m, labels=labels, figures=["qwk"])["qwk"] == \
        cohen_kappa_score(h.astype(int), rounded.astype(int), weights="quadratic", labels=np.arange(7))
    # default figures: the report's (no Spearman); resamples (B, N) in one call
    idx = rng.integers(0, 80, (5, 80))
    many = pair_metrics(h[idx], m[idx], rounded=rounded[idx])
    assert list(many) == ["exact_pct", "adjacent_pct", "qwk", "pearson", "rmse", "r2", "smd"]
    for b, row in enumerate(idx):
        one = pair_metrics(h[row], m[row], rounded=rounded[row])
        for key in many:
            assert many[key][b] == pytest.approx(float(one[key]), rel=1e-12, abs=1e-15), key
    with pytest.raises(ValueError, match="need rounded"):
        pair_metrics(h, m, figures=["qwk"])
    # undefined: constant column, fewer than 2 rows
    flat = pair_metrics(h, np.full(80, 2.0), rounded=np.full(80, 2.0))
    assert math.isnan(flat["pearson"]) and flat["qwk"] == pytest.approx(0.0, abs=1e-15) and flat["rmse"] > 0
    one = pair_metrics(h[:1], m[:1], rounded=rounded[:1])
    assert math.isnan(one["pearson"]) and math.isnan(one["smd"]) and one["rmse"] == abs(m[0] - h[0])


@pytest.mark.parametrize("gold, pred, labels, step, why", [
    ([], [], [], 1.0, dict.fromkeys(["qwk", "pearson", "spearman", "rmse"], "no labeled rows")),
    ([1.0, 2.0], [1.0, np.nan], [1, 2], 1.0, dict.fromkeys(["qwk", "pearson", "spearman", "rmse"],
                                                           "predictions contain NaN or inf")),
    ([1.0], [1.5], [1], 1.0, {"pearson": "fewer than 2 labeled rows", "spearman": "fewer than 2 labeled rows",
                              "qwk": "fewer than 2 labeled rows"}),
    ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], [2, 2, 2], 1.0, {"pearson": "a single gold value",
                                                        "spearman": "a single gold value", "qwk": "a single gold value"}),
    ([1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [1, 2, 3], 1.0, {"pearson": "constant predictions",
                                                        "spearman": "constant predictions"}),
    ([1.0, 2.0, 3.0], [1.2, 2.1, 2.5], None, None, {"qwk": "continuous target (step is None)"}),
])
def test_why_undefined_and_labeled_metrics(gold, pred, labels, step, why):
    """The result files' reasons; every other figure is pair_metrics' value (None where undefined)."""
    from scorelib.metrics import labeled_metrics, why_undefined
    gold, pred = np.asarray(gold, float), np.asarray(pred, float)
    kw = {} if labels is None else {"gold_labels": np.asarray(labels, int),
                                    "pred_labels": np.clip(np.round(np.nan_to_num(pred)), 0, 4).astype(int),
                                    "label_range": (0, 4)}
    assert why_undefined(gold, pred, kw.get("gold_labels"), step) == why
    values, reasons = labeled_metrics(gold, pred, step=step, **kw)
    assert reasons == why and list(values) == ["qwk", "pearson", "spearman", "rmse"]
    assert all((values[k] is None) == (k in why) for k in values)
    if values["rmse"] is not None:
        assert values["rmse"] == np.sqrt(np.mean((pred - gold) ** 2))
    if values["qwk"] is not None:
        assert values["qwk"] == cohen_kappa_score(kw["gold_labels"], kw["pred_labels"], weights="quadratic",
                                                  labels=np.arange(5))


def test_cutpoint_fit_uses_the_same_qwk_as_the_result_files():
    """fit_cutpoints' QWK of nearest rounding equals scikit-learn's on the same labels, bit for bit."""
    from scorelib.cutpoints.thresholds import fit_cutpoints
    rng = np.random.default_rng(11)
    gold = rng.integers(1, 7, 120).astype(float)
    pred = gold + rng.normal(0, 0.9, 120)
    cuts, fit = fit_cutpoints(gold, pred, lo=1.0, step=1.0, k=6)
    nearest = np.clip(np.floor(pred - 1 + 0.5), 0, 5).astype(int)
    assert fit["qwk_nearest"] == cohen_kappa_score(gold.astype(int) - 1, nearest, weights="quadratic",
                                                   labels=np.arange(6))
    fitted = np.searchsorted(cuts, pred, side="right")
    assert fit["qwk"] == cohen_kappa_score(gold.astype(int) - 1, fitted, weights="quadratic", labels=np.arange(6))
    assert fit["qwk"] >= fit["qwk_nearest"]
    assert fit_cutpoints([3.0] * 5, pred[:5], lo=1.0, step=1.0, k=6)[1] == {"qwk_nearest": None, "qwk": None}


def test_as_matrix_is_shared_by_the_stack():
    from scorelib.data.scores import as_matrix
    from scorelib.stack import tfidf
    assert tfidf.as_matrix is as_matrix
    assert as_matrix([1, 2, 3]).shape == (3, 1) and as_matrix(np.ones((4, 2))).shape == (4, 2)
    assert as_matrix(np.ones(6), 2).shape == (3, 2) and as_matrix(np.zeros((0, 3))).shape == (0, 3)


def test_few_rows_warned_and_each_figure_named_by_its_kind():
    """Metrics of fewer than 30 labeled rows (all prompts or one) carry a warning; the summary line names each
    figure's kind (mean of per-prompt, pooled over prompts), as the metrics JSON's ``overall_kinds`` does."""
    from scorelib.metrics import KINDS, summary_line, warnings_of

    table = PromptTable(ids=["a", "b"], ranges={"a": (0.0, 3.0), "b": (1.0, 10.0)}, step=1.0)
    rng = np.random.default_rng(2)
    prompts = ["a"] * 40 + ["b"] * 4
    gold = np.r_[rng.integers(0, 4, 40), rng.integers(1, 11, 4)].astype(float)
    pred = gold + rng.normal(0, 0.5, 44)
    m = array_metrics(prompts, gold, pred, table.round(pred, prompts), table)
    assert warnings_of(m) == ["fewer than 30 labeled rows (prompt b: 4): these figures are rough"]
    assert m["overall_kinds"] == KINDS and KINDS["qwk"] == "mean of per-prompt" and KINDS["pearson"] == "pooled over prompts"
    line = summary_line(m)
    qwk_mean = np.mean([m["per_prompt"][p]["qwk"] for p in "ab"])
    assert line.startswith(f"n=44; mean of per-prompt QWK {qwk_mean:.3f}, Pearson ")
    assert f"pooled over prompts QWK {m['overall']['qwk_pooled']:.3f}, Pearson {m['overall']['pearson']:.3f}" in line
    big = array_metrics(["a"] * 40, gold[:40], pred[:40], table.round(pred[:40], ["a"] * 40), table)
    assert "warnings" not in big and warnings_of(big) == []


def test_result_csv_keeps_each_gold_value_as_written(tmp_path):
    """A gold 3 is written 3, not 3.0, also in a column that holds halves (as the xlsx keeps it); unlabeled: empty."""
    table = two_prompts(step=0.5)
    f = frame_of(table, ["a", "a", "b", "b"], [0.0, 0.5, 1.0, 0.25], [0.2, 0.4, 0.6, 0.8])
    f["gold"] = [3.0, 2.5, np.nan, 0.1]
    paths = write_results(f, compute_metrics(f, table), table, tmp_path, "checkpoint_best.pt", "test")
    csv = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert csv["gold"].tolist() == ["3", "2.5", "", "0.1"]
    assert [c.value for c in openpyxl.load_workbook(paths["xlsx"]).active["C"][1:3]] == [3, 2.5]  # the xlsx too
