"""scorelib-report: RSMTool's figures on a fixed table, bootstrap coverage, flags, CV dirs, errors, end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scorelib import metrics
from scorelib.report import agreement
from scorelib.report import assessment
from scorelib.data.prompts import PromptTable
from scorelib.cli.report import cli_main as report_cli
from scorelib.report.builder import make_report

REF = Path(__file__).parent / "data" / "rsmtool_reference"
TOL = 1e-6


def fake_save_dir(d: Path, frame: pd.DataFrame, table: PromptTable, name="result-checkpoint_best-test.csv") -> Path:
    """A save dir holding only what the report reads: prompts.json and one result file."""
    (d / "results").mkdir(parents=True, exist_ok=True)
    table.save(d / "prompts.json")
    frame.to_csv(d / "results" / name, index=False)
    return d


@pytest.fixture(scope="module")
def reference():
    table = pd.read_csv(REF / "input.csv", keep_default_na=True)
    return table, json.loads((REF / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def reference_report(reference, tmp_path_factory):
    """The report on the reference table: machine scores in the result file, group and h2 joined from DATA."""
    t, _ = reference
    d = tmp_path_factory.mktemp("ref")
    results = pd.DataFrame({"key": t.key, "prompt": t.prompt, "gold": t.h1, "pred": t.machine,
                            "pred_rounded": t.machine_round, "text": "x"})
    fake_save_dir(d / "run", results, PromptTable(ids=["p1"], ranges={"p1": (1.0, 6.0)}, step=1.0))
    t[["key", "group", "h2"]].to_csv(d / "data.csv", index=False)
    out = make_report(d / "run", d / "data.csv", group_columns=["group"], second_score_columns=["h2"],
                      bootstrap=200, rsmeval_dir=d / "rsm")
    return json.loads(Path(out["json"]).read_text(encoding="utf-8")), out


def reference_report_machine():
    return pd.read_csv(REF / "input.csv")["machine"].tolist()


def close(a, b):
    assert a == pytest.approx(b, abs=TOL), (a, b)


def test_agreement_equals_rsmtool(reference_report, reference):
    """Human-machine figures: r, R2, RMSE, SMD on the unrounded machine score; exact and adjacent agreement
    and QWK on the rounded one (RSMTool's rows ``raw`` and ``raw_trim_round``)."""
    rep, exp = reference_report[0], reference[1]
    m = rep["traits"]["score"]["overall"]["metrics"]
    raw, rnd = exp["human_machine"]["raw"], exp["human_machine"]["raw_trim_round"]
    for ours, theirs, ref in (("pearson", "corr", raw), ("r2", "R2", raw), ("rmse", "RMSE", raw), ("smd", "SMD", raw),
                              ("exact_pct", "exact_agr", rnd), ("adjacent_pct", "adj_agr", rnd), ("qwk", "wtkappa", rnd)):
        close(m[ours]["value"], ref[theirs])
    sec = rep["traits"]["score"]["overall"]
    close(sec["human"]["mean"], raw["h_mean"]), close(sec["human"]["sd"], raw["h_sd"])
    close(sec["machine"]["mean"], raw["sys_mean"]), close(sec["machine"]["sd"], raw["sys_sd"])
    t = reference[0]
    close(float(metrics.qwk(t.h1.to_numpy(), t.machine.to_numpy())), raw["wtkappa"])  # RSMTool's kappa of continuous scores


def test_consistency_degradation_prmse_equal_rsmtool(reference_report, reference):
    rep, exp = reference_report[0], reference[1]
    hh = rep["traits"]["score"]["overall"]["human_human"]
    assert hh["n"] == exp["human_human"]["N"] == 150
    for ours, theirs in (("pearson", "corr"), ("qwk", "wtkappa"), ("exact_pct", "exact_agr"),
                         ("adjacent_pct", "adj_agr"), ("smd", "SMD")):
        close(hh["metrics"][ours], exp["human_human"][theirs])
    raw, rnd = exp["degradation"]["raw"], exp["degradation"]["raw_trim_round"]
    for ours, theirs, ref in (("pearson", "corr", raw), ("smd", "SMD", raw), ("qwk", "wtkappa", rnd),
                              ("exact_pct", "exact_agr", rnd), ("adjacent_pct", "adj_agr", rnd)):
        close(hh["degradation"][ours], ref[theirs])
    close(hh["disattenuated_r"], exp["disattenuated"]["raw"]["corr_disattenuated"])
    p = exp["prmse"]
    for ours, theirs in (("prmse", "PRMSE true"), ("mse_true", "MSE true"), ("var_true", "True score var"),
                         ("var_errors", "Variance of errors")):
        close(hh["prmse"][ours], p[theirs])
    assert (hh["prmse"]["n"], hh["prmse"]["n_double"]) == (p["N"], p["N multiple"])


def test_groups_and_fairness_equal_rsmtool(reference_report, reference):
    rep, exp = reference_report[0], reference[1]
    g = rep["traits"]["score"]["overall"]["groups"]["group"]
    for level, ref in exp["by_group"].items():
        ours, short = g["levels"][level], exp["by_group_short"][level]  # short: rsmeval's evaluation_by_group table
        assert ours["n"] == ref["raw"]["N"] == short["N"]
        close(ours["dsm"], short["DSM.raw_trim"]), close(ours["dsm"], ref["raw"]["DSM"])
        close(ours["rmse"], ref["raw"]["RMSE"]), close(ours["pearson"], ref["raw"]["corr"])
        close(ours["qwk"], ref["raw_trim_round"]["wtkappa"])
        close(ours["human"]["mean"], ref["raw"]["h_mean"]), close(ours["machine"]["mean"], ref["raw"]["sys_mean"])
    fair = exp["fairness"]["raw"]
    for analysis in ("osa", "osd", "csd"):
        close(g["fairness"][analysis]["r2"], fair[analysis]["r2"])
        close(g["fairness"][analysis]["p"], fair[analysis]["p"])
    assert g["fairness"]["base_group"] == fair["base_group"]
    t = reference[0]  # the rounded machine score too (RSMTool's raw_trim_round)
    ours = agreement.fairness(t.h1.to_numpy(), t.machine_round.to_numpy(), t.group.to_numpy())
    for analysis in ("osa", "osd", "csd"):
        close(ours[analysis]["r2"], exp["fairness"]["raw_trim_round"][analysis]["r2"])
        close(ours[analysis]["p"], exp["fairness"]["raw_trim_round"][analysis]["p"])


def test_distributions_and_confusion_matrices_equal_rsmeval(reference_report, reference):
    """Figures rsmeval computes inline, from running rsmeval 12.0.0 itself on the table."""
    rep, exp = reference_report[0], reference[1]["rsmeval"]
    o = rep["traits"]["score"]["overall"]
    assert o["distribution"]["points"] == exp["score_dist"]["score"]
    for ours, theirs in (("human_pct", "human"), ("machine_pct", "sys_raw"), ("difference", "difference")):
        assert o["distribution"][ours] == pytest.approx(exp["score_dist"][theirs], abs=TOL)
    assert o["confusion"]["points"] == exp["confMatrix"]["labels"] and o["confusion"]["matrix"] == exp["confMatrix"]["matrix"]
    hh = o["human_human"]["confusion"]
    assert hh["points"] == exp["confMatrix_h1h2"]["labels"] and hh["matrix"] == exp["confMatrix_h1h2"]["matrix"]
    for kind in ("raw", "raw_trim_round"):  # rsmeval's own run agrees with the functions the other tests use
        for k, v in reference[1]["human_machine"][kind].items():
            close(exp["eval"][kind][k], v)


def test_reference_report_flags_and_rsmeval_files(reference_report):
    rep, out = reference_report
    checks = {(f["check"], f.get("level")) for f in rep["flags"]}
    # SMD -0.26, DSM +0.11 / -0.30 / +0.21, 11.5 points fewer 4s; degradation is positive here (no flag); the DSMs
    # of a (N 100) and c (N 36) cross 0.1 but their intervals reach back inside it: only b's is flagged
    assert checks == {("smd", None), ("dsm", "b"), ("distribution", None)}
    levels = rep["traits"]["score"]["overall"]["groups"]["group"]["levels"]
    assert levels["b"]["dsm_ci"][1] < -0.1 and levels["a"]["dsm_ci"][0] < 0.1 and levels["c"]["dsm_ci"][0] < 0.1
    assert all(lv["dsm_ci"][0] < lv["dsm"] < lv["dsm_ci"][1] for lv in levels.values())
    html = Path(out["html"]).read_text(encoding="utf-8")
    assert 'id="flags"' in html and "机器评分平均低于人工评分" in html and "<script" not in html.lower()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    (csv,), (cfg,) = [p for p in out["rsmeval"] if p.suffix == ".csv"], [p for p in out["rsmeval"] if p.suffix == ".json"]
    config = json.loads(cfg.read_text(encoding="utf-8"))
    pred = pd.read_csv(csv)
    assert list(pred.columns) == ["spkitemid", "prompt", "sc1", "sc2", "system", "group"] and len(pred) == 200
    assert config["second_human_score_column"] == "sc2" and config["subgroups"] == ["group"]
    assert (config["trim_min"], config["trim_max"], config["exclude_zero_scores"]) == (1.0, 6.0, False)
    assert cfg.parent / config["predictions_file"] == csv and config["system_score_column"] == "system"
    assert pred["system"].tolist() == pytest.approx(reference_report_machine(), abs=1e-12)


def test_bootstrap_interval_coverage():
    """Over 200 synthetic data sets the 95% percentile intervals of SMD and r hold the true value ~95% of the time."""
    rng = np.random.default_rng(0)
    true_smd, true_r = 0.2 + (0.8 - 1) * 3.0, 0.8 / np.sqrt(0.8 ** 2 + 0.6 ** 2)
    hits = {"smd": 0, "pearson": 0}
    for draw in range(200):
        h = rng.normal(3.0, 1.0, 200)
        m = 0.2 + 0.8 * h + rng.normal(0, 0.6, 200)
        sec = assessment.section(h, m, None, np.zeros(200), n_boot=300, seed=[draw])
        for k, truth in (("smd", true_smd), ("pearson", true_r)):
            lo, hi = sec["metrics"][k]["ci"]
            hits[k] += lo <= truth <= hi
    assert 0.90 <= hits["smd"] / 200 <= 0.99 and 0.90 <= hits["pearson"] / 200 <= 0.99, hits


def test_bootstrap_resamples_within_prompt_and_is_seeded():
    strata = np.array(["a"] * 5 + ["b"] * 3)
    idx = agreement.bootstrap_indices(strata, 50, [1, 2])
    assert (idx[:, :5] < 5).all() and (idx[:, 5:] >= 5).all()
    assert (idx == agreement.bootstrap_indices(strata, 50, [1, 2])).all() and not (idx == agreement.bootstrap_indices(strata, 50, 3)).all()


def sec_with(smd=0.0, degr=None, diff=None, dsm=None, ci=(float("nan"), float("nan")), n=40, too_few=False,
             sd=(1.0, 0.9), qwk=None) -> dict:
    sec = {"metrics": {"smd": {"value": smd, "ci": [0, 0]}}, "human": {"mean": 0, "sd": sd[0]},
           "machine": {"mean": 0, "sd": sd[1]}, "sd_ratio": sd[1] / sd[0]}
    if qwk is not None:
        sec["metrics"].update(qwk={"value": qwk[0]}, qwk_nearest={"value": qwk[1]})
    if degr is not None:
        sec["human_human"] = {"degradation": {"qwk": degr, "pearson": 0.0}}
    if diff is not None:
        sec["distribution"] = {"points": [0.0, 1.0], "human_pct": [50.0, 50.0], "machine_pct": [50 + diff, 50 - diff],
                               "difference": [diff, -diff]}
    if dsm is not None:
        sec["groups"] = {"gender": {"levels": {"f": {"dsm": dsm, "dsm_ci": list(ci), "n": n, "too_few": too_few}}}}
    return sec


@pytest.mark.parametrize("kwargs, check", [
    ({"smd": -0.151}, "smd"), ({"smd": 0.16}, "smd"), ({"smd": 0.149}, None), ({"smd": -0.149}, None),
    ({"degr": -0.101}, "degradation_qwk"), ({"degr": -0.099}, None),
    ({"diff": 5.1}, "distribution"), ({"diff": -5.1}, "distribution"), ({"diff": 4.9}, None),
    ({"dsm": 0.101}, "dsm"), ({"dsm": -0.2}, "dsm"), ({"dsm": 0.099}, None), ({"dsm": float("nan")}, None),
    # with an interval: flagged only where all of it lies beyond the threshold; a group under min_n_per_group never
    ({"dsm": 0.3, "ci": (0.12, 0.5)}, "dsm"), ({"dsm": -0.3, "ci": (-0.5, -0.11)}, "dsm"),
    ({"dsm": 0.3, "ci": (0.05, 0.5)}, None), ({"dsm": -0.77, "ci": (-1.4, 0.02)}, None),
    ({"dsm": -0.77, "too_few": True, "n": 9}, None),
    # machine SD far below the human SD; cut-points raising QWK far over nearest rounding on such a machine
    ({"sd": (1.186, 0.062)}, "sd_ratio"), ({"sd": (1.0, 0.51)}, None),
    ({"sd": (1.0, 0.6), "qwk": (0.495, 0.0)}, None),
])
def test_flags_only_when_thresholds_are_crossed(kwargs, check):
    got = [f["check"] for f in assessment.section_flags(sec_with(**kwargs))]
    assert got == ([check] if check else [])


def test_flat_machine_flags_sd_ratio_and_cutpoint_gain_with_words():
    """The issue's photosynthesis: machine SD 0.062 against the humans' 1.186, cut-points QWK 0.495 vs 0.000."""
    flags = assessment.section_flags(sec_with(sd=(1.186, 0.062), qwk=(0.495, 0.0)))
    assert [f["check"] for f in flags] == ["sd_ratio", "cutpoint_gain"]
    assert flags[0]["en"].startswith("machine SD 0.062 is 0.05 of the human SD 1.19 (below 0.5)") and "标准差" in flags[0]["zh"]
    assert "from 0.000 (nearest rounding) to 0.495" in flags[1]["en"]
    assert [f["check"] for f in assessment.section_flags(sec_with(sd=(1.186, 0.062), qwk=(0.05, 0.0)))] == ["sd_ratio"]


def test_order_breaks_counts_a_higher_score_with_a_lower_mark():
    """One set of thresholds never breaks the order; two folds' sets can (5.25 rounded to 3.5 while 5.1 gets 5)."""
    m = np.array([5.0, 5.1, 5.25, 5.3, 1.0, 2.0])
    strata = np.array(["q"] * 4 + ["r"] * 2)
    assert assessment.order_breaks(m, np.array([5.0, 5.0, 3.5, 5.5, 2.0, 1.0]), strata) == 2  # 5.25 in q, 2.0 in r
    assert assessment.order_breaks(m, np.array([5.0, 5.0, 5.0, 5.5, 1.0, 2.0]), strata) == 0
    assert assessment.order_breaks(np.array([1.0, 1.0]), np.array([2.0, 1.0]), ["q", "q"]) == 0  # ties: no order
    # one step of slack: neighbours swapped near a threshold by two folds' thresholds are not counted
    assert assessment.order_breaks(m, np.array([5.0, 5.0, 4.5, 5.5, 2.0, 1.0]), strata, slack=0.5) == 1  # r's 1.0
    assert assessment.order_breaks(m, np.array([5.0, 5.0, 3.5, 5.5, 2.0, 1.5]), strata, slack=0.5) == 1  # q's 3.5
    sec = assessment.section(np.array([5.0, 5.0, 3.0, 6.0]), m[:4], np.array([5.0, 5.0, 3.5, 5.5]), strata[:4],
                             points=[3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0], step=0.5, n_boot=0)
    assert sec["order_breaks"] == 1 and "order" in [f["check"] for f in assessment.section_flags(sec)]


def test_flag_words():
    (f,) = assessment.section_flags(sec_with(smd=-0.23))
    assert f["en"] == "SMD \u22120.23 < \u22120.15: the machine scores lower than humans on average"
    assert "机器评分平均低于人工评分" in f["zh"]
    (f,) = assessment.section_flags(sec_with(dsm=0.19))
    assert "gender = f" in f["en"] and "higher" in f["en"] and "高于" in f["zh"] and "N = 40, no interval" in f["en"]
    (f,) = assessment.section_flags(sec_with(dsm=-0.3, ci=(-0.52, -0.13)))
    assert "(N = 40, 95% interval \u22120.52 .. \u22120.13; |DSM| > 0.1)" in f["en"]


def test_cv_dir_uses_out_of_fold_predictions(tmp_path):
    rng = np.random.default_rng(5)
    n = 60
    gold = rng.integers(0, 4, n).astype(float)
    pred = np.clip(gold + rng.normal(0.3, 0.5, n), 0, 3)
    oof = pd.DataFrame({"key": [f"k{i}" for i in range(n)], "prompt": np.where(np.arange(n) < 30, "q1", "q2"),
                        "fold": np.arange(n) % 3, "gold": gold, "pred": pred, "pred_rounded": np.round(pred), "text": "t"})
    table = PromptTable(ids=["q1", "q2"], ranges={"q1": (0.0, 3.0), "q2": (0.0, 3.0)}, step=1.0)
    d = fake_save_dir(tmp_path / "cv", oof, table, "result-cv-oof.csv")
    (d / "fold0").mkdir()
    (d / "cv.json").write_text('{"folds": 3}')
    decoy = oof.assign(pred=gold, pred_rounded=gold)  # a held-out evaluation of the ensemble, not the oof rows
    decoy.to_csv(d / "results" / "result-ensemble-test.csv", index=False)
    out = make_report(d, bootstrap=0)
    rep = out["report"]
    assert Path(out["json"]).name == "report-cv-oof.json" and Path(out["html"]).name == "report-cv-oof.html"
    assert rep["source"]["results_file"].endswith("result-cv-oof.csv") and rep["source"]["split"] == "oof"
    o = rep["traits"]["score"]["overall"]
    assert o["n"] == n and o["metrics"]["rmse"]["value"] == pytest.approx(np.sqrt(np.mean((pred - gold) ** 2)))
    assert set(rep["traits"]["score"]["per_prompt"]) == {"q1", "q2"}
    assert make_report(d, split="test", bootstrap=0)["report"]["traits"]["score"]["overall"]["metrics"]["rmse"]["value"] == 0


def test_several_traits_each_with_its_second_rater(tmp_path):
    rng = np.random.default_rng(2)
    n = 40
    cols = {"key": [f"k{i}" for i in range(n)], "prompt": "q"}
    for t, hi in (("content", 5), ("accuracy", 2)):
        g = rng.integers(0, hi + 1, n).astype(float)
        p = np.clip(g + rng.normal(0, 0.4, n), 0, hi)
        cols.update({f"gold_{t}": g, f"pred_{t}": p, f"pred_rounded_{t}": np.round(p), f"h2_{t}": g})
    frame = pd.DataFrame({**cols, "text": "x"})
    table = PromptTable(ids=["q"], ranges={"q": (0.0, 5.0)}, traits=["content", "accuracy"],
                        trait_ranges={"content": {"q": (0.0, 5.0)}, "accuracy": {"q": (0.0, 2.0)}},
                        trait_steps={"content": 1.0, "accuracy": 1.0})
    d = fake_save_dir(tmp_path / "run", frame, table)
    rep = make_report(d, second_score_columns=["h2_content", "h2_accuracy"], bootstrap=20)["report"]
    assert list(rep["traits"]) == ["content", "accuracy"]
    acc = rep["traits"]["accuracy"]["overall"]
    assert acc["distribution"]["points"] == [0.0, 1.0, 2.0] and acc["human_human"]["metrics"]["qwk"] == 1.0
    assert acc["human_human"]["degradation"]["qwk"] == pytest.approx(acc["metrics"]["qwk"]["value"] - 1.0)


@pytest.fixture
def small_dir(tmp_path):
    frame = pd.DataFrame({"key": ["a", "b", "c", "d"], "prompt": "q", "gold": [0, 1, 2, 3], "pred": [0.2, 1.1, 2.2, 2.9],
                          "pred_rounded": [0, 1, 2, 3], "text": "x"})
    d = fake_save_dir(tmp_path / "run", frame, PromptTable(ids=["q"], ranges={"q": (0.0, 3.0)}, step=1.0))
    pd.DataFrame({"id": ["a", "b", "c", "d"], "sex": ["f", "m", "f", "m"], "r2": ["0", "1", "two", "3"]}) \
        .to_csv(tmp_path / "data.csv", index=False)
    return d


@pytest.mark.parametrize("argv, words", [
    (["{dir}/nope"], ["nope: not a folder"]),
    (["{dir}", "--split", "oof"], ["--split oof", "not a cross-validation dir"]),
    (["{dir}", "--split", "valid"], ["result-checkpoint_best-valid.csv: result file not found",
                                     "scorelib-eval {dir} --split valid"]),
    (["{dir}", "--group-column", "sex"], ["no column 'sex'", "name the input table as DATA"]),
    (["{dir}", "{data}", "--group-column", "sex"], ["data.csv: no column 'key'", "--key-column"]),
    (["{dir}", "{data}", "--key-column", "id", "--group-column", "age"], ["data.csv: no column 'age'"]),
    (["{dir}", "{data}", "--key-column", "id", "--second-score-column", "r2"], ["row 4, column 'r2': 'two' is not a number"]),
    (["{dir}", "--second-score-column", "a,b"], ["--second-score-column a,b: give one column per trait"]),
    (["{dir}", "--group-column", "a,,b"], ["--group-column 'a,,b': an empty name"]),
])
def test_bad_options_are_one_line_errors(small_dir, argv, words, capsys):
    fill = {"dir": str(small_dir), "data": str(small_dir.parent / "data.csv")}
    assert report_cli([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scorelib-report: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w.format(**fill) in err, err


def test_missing_key_in_data_is_named(small_dir, capsys):
    data = small_dir.parent / "short.csv"
    pd.DataFrame({"key": ["a", "b", "c"], "sex": ["f", "m", "f"]}).to_csv(data, index=False)
    assert report_cli([str(small_dir), str(data), "--group-column", "sex"]) == 2
    assert "short.csv: column 'key': key 'd' of" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_on_a_trained_save_dir(tmp_path):
    """Train a tiny model on the demo data with a group and a second score column, then report on its test split."""
    from conftest import train_args

    from scorelib import train
    from scorelib.data.demo import write_demo

    paths = write_demo(tmp_path / "data")
    rng = np.random.default_rng(0)
    for split in ("train", "valid", "test"):
        f = pd.read_csv(paths[split])
        f["gender"] = rng.choice(["f", "m", "x"], len(f))
        f["rater2"] = np.clip(f["score"] + rng.choice([-1, 0, 0, 1], len(f)), 0, None)
        f.to_csv(paths[split], index=False)
    save_dir = tmp_path / "ckpt"
    train(train_args(save_dir, tmp_path / "data", "--score-ranges", paths["ranges"], "--score-step", "1",
                     "--no-epoch-checkpoints", "--no-save-optimizer-state"))
    assert report_cli([str(save_dir), str(tmp_path / "data"), "--group-column", "gender",
                       "--second-score-column", "rater2", "--bootstrap", "100", "--rsmeval-dir", str(tmp_path / "rsm")]) == 0
    html = (save_dir / "results" / "report-checkpoint_best-test.html").read_text(encoding="utf-8")
    rep = json.loads((save_dir / "results" / "report-checkpoint_best-test.json").read_text(encoding="utf-8"))
    assert "Flags 提示" in html and ('id="flags"' in html) == bool(rep["flags"]) and "<script" not in html.lower()
    o = rep["traits"]["score"]["overall"]
    assert o["n"] > 0 and set(o["groups"]["gender"]["levels"]) <= {"f", "m", "x"}
    assert o["human_human"]["n"] == o["n"] and o["human_human"]["prmse"]["n_double"] == o["n"]
    assert {f["scope"] for f in rep["flags"]} <= {"overall"} | {f"prompt {p}" for p in rep["traits"]["score"]["per_prompt"]}
    configs = sorted((tmp_path / "rsm").glob("*.json"))  # the demo's prompts have different ranges: one each
    assert len(configs) == len(rep["traits"]["score"]["per_prompt"])
    for cfg in configs:
        config = json.loads(cfg.read_text(encoding="utf-8"))
        assert (cfg.parent / config["predictions_file"]).is_file() and config["subgroups"] == ["gender"]

    # scorelib-eval --report: the same report, from the result file the evaluation has just written
    from scorelib.cli.eval import cli_main as eval_cli

    again = tmp_path / "again"
    assert eval_cli([str(save_dir), "--split", "test", str(tmp_path / "data"), "--cpu", "--results-path", str(again),
                     "--max-eval-rows", "24",  # the rows training evaluated (the same seed picks them)
                     "--report", "--group-column", "gender", "--second-score-column", "rater2",
                     "--bootstrap", "100"]) == 0
    rep2 = json.loads((again / "report-checkpoint_best-test.json").read_text(encoding="utf-8"))
    assert (again / "report-checkpoint_best-test.html").is_file()
    o2 = rep2["traits"]["score"]["overall"]
    assert o2["n"] == o["n"] and o2["metrics"] == o["metrics"] and rep2["flags"] == rep["flags"]


def test_cutpoints_give_qwk_nearest_and_undefined_figures_are_null(tmp_path):
    """With fitted cut-points the report gives QWK both ways; a constant machine score makes r and SMD's
    interval undefined, written as JSON null (never NaN)."""
    gold = np.array([0, 1, 2, 3, 0, 1, 2, 3], float)
    pred = np.array([0.6, 1.2, 1.6, 2.4, 0.2, 1.4, 2.1, 2.6])
    table = PromptTable(ids=["q"], ranges={"q": (0.0, 3.0)}, step=1.0, cutpoints={"q": [0.5, 1.5, 2.2]})
    rounded = table.round(pred, ["q"] * 8)
    frame = pd.DataFrame({"key": list("abcdefgh"), "prompt": "q", "gold": gold, "pred": pred, "pred_rounded": rounded,
                          "text": "x"})
    m = make_report(fake_save_dir(tmp_path / "cut", frame, table), bootstrap=0)["report"]["traits"]["score"]["overall"]
    assert m["metrics"]["qwk"]["value"] == pytest.approx(float(metrics.qwk(gold, rounded)))
    assert m["metrics"]["qwk_nearest"]["value"] == pytest.approx(float(metrics.qwk(gold, np.clip(np.floor(pred + 0.5), 0, 3))))
    assert m["metrics"]["qwk"]["value"] != m["metrics"]["qwk_nearest"]["value"]
    flat = frame.assign(pred=1.5, pred_rounded=2.0)
    out = make_report(fake_save_dir(tmp_path / "flat", flat, table.without_cutpoints()), bootstrap=10)
    text = Path(out["json"]).read_text(encoding="utf-8")
    assert "NaN" not in text
    o = json.loads(text)["traits"]["score"]["overall"]["metrics"]
    assert o["pearson"]["value"] is None and o["pearson"]["ci"] == [None, None] and o["rmse"]["value"] > 0


def test_report_of_a_frame_in_memory_renders_as_html():
    """``report_of`` (no result file: the notebooks' way) gives a page as ``make_report`` does, flags first."""
    from scorelib.report.builder import report_of
    from scorelib.report.html import render_html

    rng = np.random.default_rng(3)
    gold = rng.integers(0, 4, 80).astype(float)
    pred = np.clip(gold + 0.6 + rng.normal(0, 0.4, 80), 0, 3)  # scores high: the SMD flag fires
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(80)], "prompt": "q1", "gold": gold, "pred": pred,
                          "pred_rounded": np.round(pred), "grader2": np.clip(gold + rng.integers(-1, 2, 80), 0, 3)})
    table = PromptTable(ids=["q1"], ranges={"q1": (0.0, 3.0)}, step=1.0)
    report = report_of(frame, table, second_score_columns=["grader2"], bootstrap=0)
    page = render_html(report, "in memory <demo>")
    assert "A result frame in memory" in page and "in memory &lt;demo&gt;" in page
    assert any(f["check"] == "smd" for f in report["flags"]), report["flags"]
    assert page.index("Flags") < page.index("All prompts") and "SMD" in page


def test_report_uses_the_core_pair_metrics_qwk_and_png_encoder():
    """One copy of each: the report's pair metrics and QWK are scorelib.metrics', its inline PNGs (and the widget's)
    scorelib.plots.png_bytes' at 90 dpi; the report's figures keep their names, and a group whose humans gave one
    score gets QWK 0 (RSMTool's covariance form), not an undefined value."""
    import base64
    import struct

    from matplotlib.figure import Figure

    from scorelib import plots
    from scorelib.hub import widget
    from scorelib.report import html

    assert not hasattr(agreement, "pair_metrics") and not hasattr(agreement, "qwk")  # no copy in the report
    assert widget.png_bytes is plots.png_bytes
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    png = plots.png_bytes(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at = png.find(b"pHYs")
    assert struct.unpack(">II", png[at + 4:at + 12]) == (3543, 3543)  # 90 dpi in pixels per metre
    assert base64.b64decode(html._img(fig).split("base64,")[1][:-2]) == png
    h = np.array([1, 2, 3, 4, 2, 2, 2, 2], float)
    m = np.array([1.2, 2.4, 2.6, 3.9, 1.4, 2.5, 2.2, 3.1])
    rounded = np.round(m)
    sec = assessment.section(h, m, rounded, ["p"] * 8, points=[1.0, 2.0, 3.0, 4.0], step=1.0, n_boot=20,
                    groups={"g": np.array(["x"] * 4 + ["y"] * 4, dtype=object)}, min_n_per_group=1)
    assert list(sec["metrics"]) == ["exact_pct", "adjacent_pct", "qwk", "pearson", "rmse", "r2", "smd"]
    assert sec["metrics"]["qwk"]["value"] == float(metrics.qwk(h, rounded))
    assert sec["groups"]["g"]["levels"]["y"]["qwk"] == 0.0  # one human score, varied machine scores


def flat_two_scales(rng, n=25):
    """The issue's table: two prompts of 25 rows, 0-3 and 1-10 (step 0.5), a machine whose scores barely vary,
    and writers' schools drawn at random (groups of 9-16 rows)."""
    g1 = rng.integers(0, 4, n).astype(float)
    g2 = rng.integers(2, 21, n) / 2.0
    p1, p2 = rng.uniform(1.33, 1.55, n), rng.uniform(5.0, 5.4, n)
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(2 * n)], "prompt": ["photo"] * n + ["essay"] * n,
                          "gold": np.r_[g1, g2], "pred": np.r_[p1, p2], "text": "x",
                          "school": rng.choice(["north", "south", "east"], 2 * n)})
    table = PromptTable(ids=["photo", "essay"], ranges={"photo": (0.0, 3.0), "essay": (1.0, 10.0)}, step=0.5)
    frame["pred_rounded"] = table.round(frame["pred"].to_numpy(), frame["prompt"])
    return frame, table


def test_flat_model_on_two_scales_report(tmp_path):
    """A flat machine on prompts of 0-3 and 1-10: the SD flag in HTML and JSON, every section warned of its few rows
    (report, JSON and the command's output), no DSM for groups under min_n_per_group (and no flag), one group said so,
    and the prompts pooled only on the 0-1 scale (no pooled distribution, confusion matrix or QWK)."""
    frame, table = flat_two_scales(np.random.default_rng(5))
    frame["one"] = "all"
    d = fake_save_dir(tmp_path / "flat", frame, table)
    out = make_report(d, group_columns=["school", "one"], bootstrap=50)
    rep = json.loads(Path(out["json"]).read_text(encoding="utf-8"))
    html = Path(out["html"]).read_text(encoding="utf-8")
    per = rep["traits"]["score"]
    o = per["overall"]
    assert o["scale"] == "0-1" and per["pooled_scale"].startswith("one 0-1 scale: prompts of different ranges (0-3, 1-10)")
    assert "distribution" not in o and "confusion" not in o and not {"qwk", "exact_pct"} & set(o["metrics"])
    assert 0 <= o["human"]["mean"] <= 1 and 0 <= o["machine"]["mean"] <= 1  # on the 0-1 scale
    assert "All prompts: pooled over prompts, on one 0-1 scale" in html
    for p in ("photo", "essay"):
        assert "distribution" in per["per_prompt"][p] and per["per_prompt"][p]["sd_ratio"] < 0.5
    sd_flags = {f["scope"] for f in rep["flags"] if f["check"] == "sd_ratio"}
    assert sd_flags == {"overall", "prompt photo", "prompt essay"} and "machine SD" in html and "标准差" in html
    assert not [f for f in rep["flags"] if f["check"] == "dsm"]
    school = o["groups"]["school"]
    assert school["min_n_per_group"] == 30 and all(lv["too_few"] and lv["dsm"] is None for lv in school["levels"].values())
    assert "fewer than 30 rows" in html and "min_n_per_group" in school["note"]
    one = o["groups"]["one"]
    assert one["levels"]["all"]["dsm"] is None and one["note"].startswith("one group only") and "one group only" in html
    assert {(w["scope"], w["check"]) for w in rep["warnings"]} == {("prompt photo", "few_rows"),
                                                                   ("prompt essay", "few_rows")}  # 50 rows in all
    assert 'id="warnings"' in html and "only 25 rows (fewer than 30)" in html
    # a smaller minimum lets the schools have their DSM, each with N and an interval beside it
    rep2 = make_report(d, group_columns=["school"], bootstrap=50, min_n_per_group=5)["report"]
    for lv in rep2["traits"]["score"]["overall"]["groups"]["school"]["levels"].values():
        assert not lv["too_few"] and np.isfinite(lv["dsm"]) and lv["dsm_ci"][0] <= lv["dsm"] <= lv["dsm_ci"][1]


def test_report_command_prints_warnings_and_takes_min_n_per_group(tmp_path, capsys):
    frame, table = flat_two_scales(np.random.default_rng(6), n=10)
    d = fake_save_dir(tmp_path / "few", frame, table)
    assert report_cli([str(d), "--group-column", "school", "--bootstrap", "20", "--min-n-per-group", "2"]) == 0
    out = capsys.readouterr().out
    assert "warning [score, overall] only 20 rows (fewer than 30)" in out and "flag(s)" in out
    rep = json.loads((d / "results" / "report-checkpoint_best-test.json").read_text(encoding="utf-8"))
    assert rep["source"]["min_n_per_group"] == 2
    with pytest.raises(SystemExit):
        report_cli([str(d), "--min-n-per-group", "0"])
