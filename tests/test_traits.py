"""Several trait scores per text (issue 12 B): one model, K outputs, per-trait result columns, MCRMSE."""
import json

import numpy as np
import pandas as pd
import pytest

import scorelib
from conftest import module_scratch, train_args
from scorelib.data import demo
from scorelib.cli.score import cli_main as score_cli
from scorelib.metrics import compute_metrics, flat_metrics
from scorelib.options import parse_args
from scorelib.data.prompts import PromptTable
from scorelib.results import frame_metrics, results_frame
from scorelib.tasks.text_scoring import TextScoringTask

TRAITS = ["content", "accuracy"]


@pytest.fixture(scope="module")
def trait_data(tmp_path_factory):
    return demo.write_demo_traits(tmp_path_factory.mktemp("traits") / "data")


@pytest.fixture(scope="module")
def trait_run(trait_data, request, tmp_path_factory):
    """One tiny training run of a two-trait model on the demo traits."""
    with module_scratch(request, tmp_path_factory, "trained_traits") as base:
        yield scorelib.train(train_args(base / "ckpt", trait_data["train"].parent, "--score-column",
                                        ",".join(TRAITS), "--score-ranges", trait_data["ranges"],
                                        "--no-epoch-checkpoints"))


def two_traits():
    return PromptTable(ids=["a"], ranges={"a": (0.0, 5.0)}, traits=TRAITS,
                       trait_ranges={"content": {"a": (0.0, 5.0)}, "accuracy": {"a": (0.0, 2.0)}},
                       trait_steps={"content": 1.0, "accuracy": 1.0})


def test_demo_traits_follow_the_annotations():
    rows = demo.generate()
    frames = demo.load_demo_traits()
    every = pd.concat(frames.values())
    assert list(every.columns) == ["key", "prompt", "text", "context", *TRAITS]
    by_key = {r["key"]: r for r in rows}
    for _, r in every.head(50).iterrows():
        assert r["content"] == len(set(by_key[r["key"]]["ideas"]))
        assert r["accuracy"] == max(0, 2 - len(set(by_key[r["key"]]["misconceptions"])))


def test_ranges_file_with_a_trait_column(trait_data, tokenizer):
    args = parse_args([str(trait_data["train"].parent), "--score-column", "content,accuracy",
                       "--score-ranges", str(trait_data["ranges"])])
    table = TextScoringTask.setup_task(args, tokenizer=tokenizer).prompts
    assert table.traits == TRAITS and table.num_traits == 2
    assert table.for_trait("content").ranges == {p: (0.0, 5.0) for p in table.ids}
    assert table.for_trait("accuracy").ranges == {p: (0.0, 2.0) for p in table.ids}
    assert table.trait_steps == {"content": 1.0, "accuracy": 1.0}
    assert PromptTable.from_dict(json.loads(json.dumps(table.to_dict()))).to_dict() == table.to_dict()
    # one --score-range and --score-step apply to every trait, over the file
    args = parse_args([str(trait_data["train"].parent), "--score-column", "content,accuracy", "--score-ranges",
                       str(trait_data["ranges"]), "--score-range", "0", "6", "--score-step", "0.5"])
    table = TextScoringTask.setup_task(args, tokenizer=tokenizer).prompts
    assert all(table.for_trait(t).ranges["q1"] == (0.0, 6.0) and table.for_trait(t).step == 0.5 for t in TRAITS)


def test_scale_unscale_round_per_trait():
    table = two_traits()
    scores = np.array([[5.0, 1.0], [2.0, 2.0]])
    scaled = table.scale(scores, ["a", "a"])
    np.testing.assert_allclose(scaled, [[1.0, 0.5], [0.4, 1.0]])
    np.testing.assert_allclose(table.unscale(scaled, ["a", "a"]), scores)
    np.testing.assert_array_equal(table.round([[2.6, 1.4], [9.0, -1.0]], ["a", "a"]), [[3.0, 1.0], [5.0, 0.0]])


def test_mcrmse_by_hand():
    table = two_traits()
    gold = np.array([[1.0, 0.0], [2.0, 1.0], [4.0, 2.0]])
    pred01 = np.array([[0.3, 0.25], [0.4, 0.5], [0.6, 0.75]])
    frame = results_frame(["k0", "k1", "k2"], ["a"] * 3, gold, pred01, ["x", "y", "z"], table)
    metrics = frame_metrics(frame, table)
    pred = pred01 * [5.0, 2.0]
    rmse = [float(np.sqrt(np.mean((pred[:, k] - gold[:, k]) ** 2))) for k in range(2)]
    assert metrics["traits"]["content"]["overall"]["rmse"] == pytest.approx(rmse[0])
    assert metrics["traits"]["accuracy"]["overall"]["rmse"] == pytest.approx(rmse[1])
    assert metrics["mcrmse"] == pytest.approx((rmse[0] + rmse[1]) / 2)
    flat = flat_metrics(metrics)
    assert flat["mcrmse"] == flat["rmse"] == pytest.approx(np.mean(rmse)) and flat["rmse_accuracy"] == rmse[1]
    same = compute_metrics(["a"] * 3, gold, pred, table.round(pred, ["a"] * 3), table)
    assert same["mcrmse"] == metrics["mcrmse"]


@pytest.mark.slow
def test_result_files_have_trait_columns_with_gold_as_read(trait_run, trait_data):
    results = trait_run["results_path"]
    frame = pd.read_csv(results / "result-checkpoint_best-test.csv", dtype={"key": str, "prompt": str})
    cols = [c for t in TRAITS for c in (f"gold_{t}", f"pred_{t}", f"pred_rounded_{t}")]
    assert list(frame.columns) == ["key", "prompt", *cols, "text"]
    raw = pd.read_csv(trait_data["test"], dtype={"key": str}).set_index("key")
    for t in TRAITS:
        assert (frame[f"gold_{t}"].to_numpy() == raw.loc[frame["key"], t].to_numpy()).all()
    lo, hi = {"content": (0, 5), "accuracy": (0, 2)}["accuracy"]
    assert frame["pred_accuracy"].between(lo, hi).all() and set(frame["pred_rounded_accuracy"]) <= {0.0, 1.0, 2.0}
    metrics = json.loads((results / "metrics-checkpoint_best-test.json").read_text())
    assert set(metrics["traits"]) == set(TRAITS)
    rmse = [metrics["traits"][t]["overall"]["rmse"] for t in TRAITS]
    assert metrics["mcrmse"] == pytest.approx(np.mean(rmse))
    history = pd.read_csv(trait_run["save_dir"] / "history.csv")
    assert "valid_mcrmse" in history and "valid_rmse_content" in history
    xlsx = pd.read_excel(results / "result-checkpoint_best-test.xlsx")
    assert list(xlsx.columns) == list(frame.columns)


@pytest.mark.slow
def test_scorer_returns_one_value_per_trait(trait_run):
    scorer = scorelib.load(trait_run["save_dir"], device="cpu")
    assert scorer.traits == TRAITS
    one = scorer.score("The Earth is tilted on its axis.", prompt="q1")
    assert list(one) == TRAITS and 0 <= one["content"] <= 5 and 0 <= one["accuracy"] <= 2
    many = scorer.score(["The Earth is tilted on its axis.", "Plants need light."], prompt="q1")
    assert many.shape == (2, 2)
    assert many[0, 0] == pytest.approx(one["content"], abs=1e-5)
    record = scorer.record(one, "q1")
    assert record["traits"]["accuracy"]["max"] == 2.0


@pytest.mark.slow
def test_score_cli_prints_one_line_per_trait(trait_run, capsys):
    assert score_cli([str(trait_run["save_dir"]), "--prompt", "q1", "The Earth is tilted on its axis."]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == TRAITS
    assert "q1's 0–2 scale" in lines[1]
    assert score_cli([str(trait_run["save_dir"]), "--prompt", "q1", "--format", "json", "A text."]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record["traits"]) == set(TRAITS) and record["traits"]["content"]["min"] == 0.0


def test_single_score_column_is_unchanged(tokenizer):
    """One score column: no trait keys saved, encoder_out (B,), the same columns as before."""
    task = TextScoringTask.setup_task(parse_args(["--max-train-rows", "8"]), tokenizer=tokenizer)
    assert task.prompts.traits == [] and "traits" not in task.prompts.to_dict()
    ds = task.load_dataset("train")
    assert ds.scores.shape == (len(ds),) and ds.collater([ds[0], ds[1]])["target"].shape == (2,)


def test_two_trait_batch_and_loss(trait_data, tokenizer):
    import torch

    from scorelib.criterions.score_mse import ScoreMSECriterion

    args = parse_args([str(trait_data["train"].parent), "--score-column", "content,accuracy",
                       "--score-ranges", str(trait_data["ranges"]), "--max-train-rows", "8"])
    task = TextScoringTask.setup_task(args, tokenizer=tokenizer)
    ds = task.load_dataset("train")
    sample = ds.collater([ds[i] for i in range(4)])
    assert sample["score"].shape == (4, 2) and sample["score"].dtype == torch.float64
    assert sample["target"].shape == (4, 2) and sample["target"].dtype == torch.float32
    pred = torch.full((4, 2), 0.5)
    loss, size, _ = ScoreMSECriterion().compute_loss({"encoder_out": pred}, sample)
    per_trait = ((pred - sample["target"]) ** 2).mean(0)
    assert size == 4 and float(loss) / size == pytest.approx(float(per_trait.mean()))


@pytest.mark.slow
def test_score_table_writes_columns_per_trait(trait_run, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["The Earth is tilted.", "Plants need light."], "prompt": ["q1", "q2"]}).to_csv(src, index=False)
    assert score_cli([str(trait_run["save_dir"]), "--input", str(src), "--output", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["text", "prompt", "pred_content", "pred_rounded_content", "pred_accuracy",
                                 "pred_rounded_accuracy"]


@pytest.mark.slow
def test_widget_shows_every_trait_and_plots_the_chosen_one(trait_run):
    pytest.importorskip("ipywidgets")
    from scorelib.hub.widget import ScoringWidget

    scorer = scorelib.load(trait_run["save_dir"], device="cpu")
    w = ScoringWidget(scorer, trait_run["results_path"] / "result-checkpoint_best-valid.csv")
    assert w.trait is not None and list(w.trait.options) == TRAITS
    w.text.value = "The Earth is tilted on its axis."
    w.on_click()
    text = w.output.outputs[0]["text"]
    assert text.startswith("content: ") and "\naccuracy: " in text
    assert any(o.get("output_type") == "display_data" for o in w.output.outputs)
    w.trait.value = "accuracy"  # redraws for the chosen trait
    assert w.last["traits"]["accuracy"]["max"] == 2.0


def test_cv_of_traits_refuses_a_missing_trait_column_before_writing(trait_data, tmp_path, capsys):
    """Cross-validation of several traits (tests/test_cv.py trains one) checks every trait column up front."""
    from scorelib.cli.cv import cli_main as cv_cli

    rc = cv_cli([str(trait_data["train"]), "--score-column", "content,fluency", "--save-dir", str(tmp_path / "cv")])
    err = capsys.readouterr().err
    assert rc == 2 and "'fluency'" in err and str(trait_data["train"]) in err, err
    assert not (tmp_path / "cv").exists()


@pytest.mark.slow
def test_fit_cutpoints_per_trait(trait_data, tmp_path):
    save_dir = tmp_path / "ckpt"
    scorelib.train(train_args(save_dir, trait_data["train"].parent, "--score-column", ",".join(TRAITS),
                              "--score-ranges", trait_data["ranges"], "--no-epoch-checkpoints", "--fit-cutpoints"))
    saved = json.loads((save_dir / "prompts.json").read_text())
    table = PromptTable.from_dict(saved)
    assert set(saved.get("trait_cutpoints", {})) <= set(TRAITS)
    for t, per_prompt in saved.get("trait_cutpoints", {}).items():
        assert table.for_trait(t).cutpoints == per_prompt
    metrics = json.loads((save_dir / "results" / "metrics-checkpoint_best-valid.json").read_text())
    fitted = [t for t in TRAITS if table.for_trait(t).cutpoints]
    assert fitted and all("qwk_nearest" in metrics["traits"][t]["overall"] for t in fitted)
    assert scorelib.load(save_dir, device="cpu").table.to_dict() == table.to_dict()


def test_trait_ranges_per_prompt_with_fallbacks(tmp_path):
    from scorelib.data.tables import Tables
    from scorelib.data.scores import ScoreColumns, read_trait_ranges

    path = tmp_path / "ranges.csv"
    path.write_text("trait,prompt,min,max,step\nx,a,0,4,0.5\ny,,0,2,\n")
    trait_ranges, trait_steps = read_trait_ranges(path, ["x", "y"])
    assert trait_ranges == {"x": {"a": (0.0, 4.0)}, "y": {"*": (0.0, 2.0)}} and trait_steps == {"x": 0.5}
    frame = pd.DataFrame({"key": list("1234"), "prompt": list("aabb"), "text": list("wxyz"), "context": None,
                          "score_x": [1.0, 2.0, 3.0, 4.0], "score_y": [0.0, 1.0, 0.0, 1.0], "_row": [2, 3, 4, 5]})
    tables = Tables({"train": frame}, scores=ScoreColumns(("x", "y")), step=1.0, trait_ranges=trait_ranges,
                    trait_steps=trait_steps)
    table = PromptTable.from_tables(tables)
    assert table.for_trait("x").ranges == {"a": (0.0, 4.0), "b": (3.0, 4.0)}  # b: its training scores
    assert table.for_trait("y").ranges == {"a": (0.0, 2.0), "b": (0.0, 2.0)}
    assert (table.for_trait("x").step, table.for_trait("y").step) == (0.5, 1.0)  # y: the layout's step
    assert table.ranges == {"a": (0.0, 4.0), "b": (0.0, 4.0)}
