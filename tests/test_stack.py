"""--stack tfidf: the TF-IDF ridge, its blend weight fitted on valid, saving without pickle, scoring with it."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import module_scratch, train_args, trait_table
from scorelib.data.demo import load_demo
from scorelib.errors import CheckpointError
from scorelib.stack.tfidf import STACK_DIR, TfidfStack, fit_weight


def demo_texts(n: int, split: str = "train"):
    frame = load_demo()[split].head(n)
    lo, hi = frame["score"].min(), frame["score"].max()
    return frame["text"].tolist(), ((frame["score"] - lo) / (hi - lo)).to_numpy()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A stack fitted on demo texts (no encoder needed), saved, and loaded back."""
    (x, y), (vx, vy) = demo_texts(200), demo_texts(60, "valid")
    stack = TfidfStack.fit(x, y, vx, vy)
    folder = tmp_path_factory.mktemp("stack") / STACK_DIR
    stack.save(folder)
    return stack, TfidfStack.load(folder), folder, vx, vy


def test_blend_weight_never_worse_than_the_better_part_on_its_data():
    rng = np.random.default_rng(0)
    for trial in range(50):
        gold = rng.normal(size=(40, 3))
        enc = gold + rng.normal(scale=rng.uniform(0.1, 2), size=gold.shape) + rng.normal(scale=0.5)
        stack = gold + rng.normal(scale=rng.uniform(0.1, 2), size=gold.shape)
        w = fit_weight(enc, stack, gold)
        assert np.all((0 <= w) & (w <= 1))
        blend = w * enc + (1 - w) * stack
        for k in range(3):
            mse = [np.mean((x[:, k] - gold[:, k]) ** 2) for x in (blend, enc, stack)]
            assert mse[0] <= min(mse[1:]) + 1e-12
            grid = [np.mean((a * enc[:, k] + (1 - a) * stack[:, k] - gold[:, k]) ** 2) for a in np.linspace(0, 1, 101)]
            assert mse[0] <= min(grid) + 1e-12  # the closed form is the best weight in [0, 1]
    gold = np.linspace(0, 1, 20)[:, None]
    enc, stack = gold + 0.3 * np.sin(np.arange(20))[:, None], gold - 0.7 * np.sin(np.arange(20))[:, None]
    assert fit_weight(enc, stack, gold) == pytest.approx([0.7])  # 0.7 * 0.3 - 0.3 * 0.7 = 0: the exact blend


def test_stack_uses_sklearn_tfidf_settings_and_survives_save_load_exactly(fitted):
    stack, loaded, folder, vx, _ = fitted
    assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "stack.json"]
    info = json.loads((folder / "stack.json").read_text())
    assert info["vectorizers"]["word"]["ngram_range"] == [1, 2] and info["vectorizers"]["char"]["ngram_range"] == [2, 5]
    assert info["vectorizers"]["word"]["sublinear_tf"] and info["vectorizers"]["char"]["sublinear_tf"]
    assert np.array_equal(loaded.coef, stack.coef) and np.array_equal(loaded.intercept, stack.intercept)
    assert loaded.vocabularies == stack.vocabularies and loaded.alphas == stack.alphas
    new = ["A text the stack never saw: plants, light and sugar.", vx[0], vx[1][::-1]]
    assert np.array_equal(loaded.predict01(new), stack.predict01(new))
    assert np.array_equal(loaded.predict01(vx), stack.predict01(vx))


def test_alpha_is_picked_on_valid(fitted):
    from scipy.sparse import hstack
    from sklearn.linear_model import Ridge

    from scorelib.stack.blend import ALPHAS, VECTORIZERS, vectorizer

    stack, _, _, vx, vy = fitted
    x, y = demo_texts(200)
    vecs = {k: vectorizer(s) for k, s in VECTORIZERS.items()}
    xt = hstack([vecs[k].fit_transform(x) for k in VECTORIZERS], format="csr")
    xv = hstack([vecs[k].transform(vx) for k in VECTORIZERS], format="csr")
    errors = {a: np.mean((np.clip(Ridge(alpha=a).fit(xt, y).predict(xv), 0, 1) - vy) ** 2) for a in ALPHAS}
    assert stack.alphas == [min(errors, key=errors.get)]


@pytest.mark.parametrize("plant", ["pickle", "object_npz"])
def test_a_planted_pickle_is_refused(fitted, tmp_path, plant):
    _, _, folder, _, _ = fitted
    target = tmp_path / STACK_DIR
    shutil.copytree(folder, target)
    if plant == "pickle":
        (target / "arrays.npz").write_bytes(pickle.dumps({"coef": np.zeros(3)}))
    else:
        with open(target / "arrays.npz", "wb") as f:
            np.savez(f, coef=np.array([{"a": 1}], dtype=object), intercept=np.zeros(1))
    with pytest.raises(CheckpointError, match="refused to load") as e:
        TfidfStack.load(target)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def stacked_run(request, tmp_path_factory):
    from scorelib import train

    with module_scratch(request, tmp_path_factory, "stacked") as base:
        out = train(train_args(base / "ckpt", "--no-epoch-checkpoints", "--no-save-optimizer-state",
                               "--score-step", "1", "--stack", "tfidf", "--max-train-rows", "96",
                               "--fit-cutpoints"))
        yield out


@pytest.mark.slow
def test_run_writes_all_three_predictions_and_metrics(stacked_run):
    save_dir, metrics = stacked_run["save_dir"], stacked_run["metrics"]["valid"]
    frame = pd.read_csv(save_dir / "results" / "result-checkpoint_best-valid.csv", dtype={"key": str})
    assert list(frame.columns) == ["key", "prompt", "gold", "pred", "pred_rounded", "pred_encoder", "pred_stack",
                                   "text"]
    weight = json.loads((save_dir / STACK_DIR / "stack.json").read_text())["weight"]
    assert metrics["blend_weight"] == {"score": weight[0]}
    assert np.allclose(frame["pred"], weight[0] * frame["pred_encoder"] + (1 - weight[0]) * frame["pred_stack"])
    on_file = json.loads((save_dir / "results" / "metrics-checkpoint_best-valid.json").read_text())
    assert {"encoder", "stack", "blend_weight"} <= set(on_file)
    rmse = {name: np.sqrt(np.mean((frame[col] - frame["gold"]) ** 2))
            for name, col in (("blend", "pred"), ("encoder", "pred_encoder"), ("stack", "pred_stack"))}
    assert rmse["encoder"] == pytest.approx(on_file["encoder"]["overall"]["rmse"])
    assert rmse["stack"] == pytest.approx(on_file["stack"]["overall"]["rmse"])
    # fitted on valid: the saved weight is the best on these rows, and the blend is never worse than either part
    assert fit_weight(frame[["pred_encoder"]], frame[["pred_stack"]], frame[["gold"]]) == pytest.approx(weight)
    assert rmse["blend"] <= min(rmse["encoder"], rmse["stack"]) + 1e-9
    assert on_file["overall"]["rmse"] == pytest.approx(rmse["blend"])


@pytest.mark.slow
def test_fit_cutpoints_fits_the_blend(stacked_run):
    from scorelib.cutpoints.thresholds import fit_all_cutpoints
    from scorelib.data.prompts import PromptTable

    save_dir = stacked_run["save_dir"]
    saved = PromptTable.load(save_dir / "prompts.json")
    frame = pd.read_csv(save_dir / "results" / "result-checkpoint_best-valid.csv", dtype={"key": str, "prompt": str})
    fresh = PromptTable.load(save_dir / "prompts.json")
    fit_all_cutpoints(fresh, frame["prompt"].tolist(), frame["gold"].to_numpy(), frame["pred"].to_numpy())
    assert saved.cutpoints and fresh.cutpoints == saved.cutpoints
    assert np.array_equal(frame["pred_rounded"], saved.round(frame["pred"].to_numpy(), frame["prompt"].tolist()))


@pytest.mark.slow
def test_scorer_and_eval_cli_use_the_blend(stacked_run, tmp_path):
    import scorelib
    from scorelib.cli.eval import cli_main as eval_cli

    save_dir = stacked_run["save_dir"]
    scorer = scorelib.load(save_dir, device="cpu")
    texts = ["Plants make sugar from light.", "The earth is tilted, so seasons change."]
    ds = scorer.dataset(texts, "q1")
    parts = scorer.models_parts01(ds)
    w = scorer.stack.weight[0]
    assert np.allclose(parts["blend"], w * parts["encoder"] + (1 - w) * parts["stack"])
    lo, hi = scorer.table.ranges["q1"]
    assert np.allclose(scorer.score(texts, prompt="q1"), parts["blend"][0] * (hi - lo) + lo)
    assert eval_cli([str(save_dir), "--split", "valid", "--results-path", str(tmp_path), "--cpu"]) == 0
    again = pd.read_csv(tmp_path / "result-checkpoint_best-valid.csv", dtype={"key": str})
    first = pd.read_csv(save_dir / "results" / "result-checkpoint_best-valid.csv", dtype={"key": str})
    assert list(again.columns) == list(first.columns)
    for col in ("pred", "pred_encoder", "pred_stack"):
        assert np.allclose(again[col], first[col], atol=1e-6), col


@pytest.mark.slow
def test_score_output_carries_the_stack_parts(stacked_run, tmp_path):
    from scorelib.cli.score import cli_main as score_cli

    save_dir = stacked_run["save_dir"]
    first = pd.read_csv(save_dir / "results" / "result-checkpoint_best-valid.csv", dtype={"key": str})
    first[["key", "prompt", "text"]].to_csv(tmp_path / "in.csv", index=False)
    assert score_cli([str(save_dir), "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"),
                      "--cpu"]) == 0
    out = pd.read_csv(tmp_path / "out.csv", dtype={"key": str})
    assert list(out.columns) == ["key", "prompt", "text", "pred", "pred_rounded", "pred_encoder", "pred_stack"]
    for col in ("pred", "pred_rounded", "pred_encoder", "pred_stack"):  # the same figures as the run's result file
        assert np.allclose(out[col], first[col], atol=1e-6), col


@pytest.mark.slow
def test_widget_scores_with_the_blend(stacked_run):
    """The widget shows the blended score (the one ``pred`` holds), not the encoder's alone."""
    import scorelib
    from scorelib.hub.widget import ScoringWidget

    save_dir = stacked_run["save_dir"]
    scorer = scorelib.load(save_dir, device="cpu")
    results = pd.read_csv(save_dir / "results" / "result-checkpoint_best-valid.csv", dtype={"key": str, "prompt": str})
    w = ScoringWidget(scorer, results=results)
    w.prompt.value, w.text.value = "q1", "Plants make sugar from light, water and carbon dioxide."
    w.button.click()
    parts = scorer.models_parts01(scorer.dataset([w.text.value], "q1"))
    lo, hi = scorer.table.ranges["q1"]
    assert w.last["score"] == pytest.approx(float(parts["blend"][0][0]) * (hi - lo) + lo, abs=1e-6)
    assert abs(parts["blend"][0][0] - parts["encoder"][0][0]) > 1e-6  # the stack moved it: the test can tell
    assert f"{w.last['score']:.1f}" in "".join(o.get("text", "") for o in w.output.outputs)


@pytest.mark.slow
def test_scorelib_load_refuses_a_planted_pickle(stacked_run, tmp_path, capsys):
    import scorelib
    from scorelib.cli.score import cli_main as score_cli

    save_dir = stacked_run["save_dir"]
    copy = tmp_path / "copy"
    shutil.copytree(save_dir, copy, ignore=shutil.ignore_patterns("checkpoint_last.pt", "results"))
    (copy / STACK_DIR / "arrays.npz").write_bytes(pickle.dumps(np.zeros(3)))
    with pytest.raises(CheckpointError, match="refused to load"):
        scorelib.load(copy, device="cpu")
    assert score_cli([str(copy), "--prompt", "q1", "--cpu", "some text"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scorelib-score: error:") and "refused to load" in err and "\n" not in err


@pytest.mark.slow
def test_cv_stack_fits_the_weight_on_out_of_fold_predictions(tmp_path):
    import scorelib
    from scorelib.cli.cv import cross_validate
    from scorelib.cli.options import parse_cv_args

    frame = trait_table(tmp_path, 16)
    save = tmp_path / "cv"
    out = cross_validate(parse_cv_args([
        str(tmp_path / "traits.csv"), "--folds", "2", "--save-dir", str(save), "--score-column", "content,accuracy",
        "--score-ranges", str(tmp_path / "ranges.csv"), "--stack", "tfidf", "--cpu", "--max-epoch", "1",
        "--log-format", "simple", "--no-epoch-checkpoints", "--max-length", "64"]))
    oof = pd.read_csv(save / "results" / "result-cv-oof.csv", dtype={"key": str})
    for t in ("content", "accuracy"):
        assert {f"pred_encoder_{t}", f"pred_stack_{t}"} <= set(oof.columns)
    weight = json.loads((save / STACK_DIR / "blend.json").read_text())["weight"]
    gold, enc, stk = (oof[[f"{c}_{t}" for t in ("content", "accuracy")]].to_numpy()
                      for c in ("gold", "pred_encoder", "pred_stack"))
    assert fit_weight(enc, stk, gold) == pytest.approx(weight)
    assert np.allclose(oof[["pred_content", "pred_accuracy"]], np.asarray(weight) * enc + (1 - np.asarray(weight)) * stk)
    pooled = json.loads((save / "results" / "metrics-cv-oof.json").read_text())
    assert {"encoder", "stack"} <= set(pooled) and pooled["overall"]["mcrmse"] <= min(
        pooled["encoder"]["overall"]["mcrmse"], pooled["stack"]["overall"]["mcrmse"]) + 1e-9
    assert (save / "fold0" / STACK_DIR / "arrays.npz").is_file()
    scorer = scorelib.load(save, device="cpu")  # the fold ensemble blends with the out-of-fold weight
    assert scorer.num_models == 2 and scorer.stack.weight.tolist() == weight
    values, spread = scorer.score(["Plants use light to make sugar."], prompt=frame["prompt"][0], return_spread=True)
    assert values.shape == (1, 2)
    assert out["metrics"]["pooled"]["stack"]["overall"]["mcrmse"] is not None
