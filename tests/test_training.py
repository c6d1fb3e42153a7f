"""Tests of training runs and their checkpoints (scorelib.trainer, scorelib.checkpoint_utils, scorelib.cli.train).

Every run here is a real, tiny one: the default encoder on a few rows of the demo data.
"""
import importlib
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import module_scratch, train_args
from scorelib import train
from scorelib.metrics import MAXIMIZE
from scorelib.training import Progress
from scorelib.trainer import Trainer

LOOP = importlib.import_module("scorelib.training")  # the module (``scorelib.train`` itself is the function)
# the columns of SAVE_DIR/history.csv, one row per epoch (scorelib.training.train_epoch)
HISTORY_COLUMNS = ["epoch", "updates", "train_loss", "valid_qwk", "valid_qwk_pooled", "valid_pearson",
                   "valid_spearman", "valid_rmse", "valid_loss", "tokens_per_s", "seconds", "valid_seconds"]
# 32 rows in batches of 8: 4 updates per epoch, a checkpoint after update 2 and at the end of the epoch
BASE = ["--max-train-rows", "32", "--max-eval-rows", "16", "--batch-size", "8", "--save-interval-updates", "2"]
TINY = ["--max-train-rows", "16", "--max-eval-rows", "8", "--batch-size", "8", "--no-epoch-checkpoints"]


def load_pt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_plain(value, where="checkpoint"):
    """Only tensors and plain Python values (what ``weights_only=True`` accepts by design)."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, (str, int)), f"{where}: key {k!r} of type {type(k).__name__}"
            assert_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            assert_plain(v, f"{where}[{i}]")
    else:
        assert value is None or isinstance(value, (bool, int, float, str, torch.Tensor)), \
            f"{where}: {type(value).__name__}"


class Recorder:
    """Wraps ``train_epoch`` and ``Trainer.train_step`` to look at the trainer as training starts."""

    def __init__(self, monkeypatch):
        self.start, self.steps_from = None, []
        original_epoch, original_step = LOOP.train_epoch, Trainer.train_step
        rec = self

        def epoch_wrapper(args, trainer, progress, *rest):
            if rec.start is None or rec.trainer is not trainer:  # the first epoch of each run
                rec.trainer = trainer
                rec.start = SimpleNamespace(
                    num_updates=trainer.num_updates, epoch=progress.epoch,
                    optimizer_state=len(trainer.optimizer.optimizer.state),
                    scheduler_steps=trainer.scheduler.last_epoch, amp_dtype=trainer.amp_dtype,
                    ques_emb=trainer.model.ques_emb.weight.detach().clone(),
                    model={k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
            return original_epoch(args, trainer, progress, *rest)

        def step_wrapper(trainer, samples):
            rec.steps_from.append(trainer.num_updates)
            return original_step(trainer, samples)

        monkeypatch.setattr(LOOP, "train_epoch", epoch_wrapper)
        monkeypatch.setattr(Trainer, "train_step", step_wrapper)


@pytest.fixture(scope="module")
def base_run(request, tmp_path_factory):
    with module_scratch(request, tmp_path_factory, "base") as base:
        out = train(train_args(base / "ckpt", *BASE))
        yield SimpleNamespace(dir=base / "ckpt", out=out)


@pytest.mark.slow
def test_short_run_writes_best_last_epoch_and_update_checkpoints(base_run):
    d = base_run.dir
    for name, updates in [("checkpoint_1_2.pt", 2), ("checkpoint1.pt", 4)]:
        state = load_pt(d / name)
        assert state["extra_state"]["num_updates"] == updates, name
        assert state["extra_state"]["epoch"] == 1
    assert state["extra_state"]["end_of_epoch"] is True
    assert load_pt(d / "checkpoint_1_2.pt")["extra_state"]["end_of_epoch"] is False
    assert load_pt(d / "checkpoint_1_2.pt")["extra_state"]["iterations_in_epoch"] == 2
    best = load_pt(d / "checkpoint_best.pt")
    assert best["extra_state"]["num_updates"] in (2, 4)
    assert best["extra_state"]["best"]["metric"] == "qwk"  # the demo has a score step, so QWK picks the best
    assert {p.name for p in d.glob("*.pt")} >= {"checkpoint_best.pt", "checkpoint_last.pt", "checkpoint1.pt",
                                                 "checkpoint_1_2.pt"}
    assert not list(d.glob(".*tmp*")), "temporary files left behind"
    assert (d / "tokenizer").is_dir() and (d / "encoder" / "config.json").is_file() and (d / "prompts.json").is_file()


@pytest.mark.slow
def test_no_epoch_checkpoints_keeps_only_best_and_last(trained_dir):
    assert sorted(p.name for p in trained_dir.glob("*.pt")) == ["checkpoint_best.pt", "checkpoint_last.pt"]


@pytest.mark.slow
def test_checkpoint_layout_holds_only_tensors_and_plain_values(base_run):
    state = load_pt(base_run.dir / "checkpoint1.pt")
    assert {"cfg", "model", "optimizer_history", "extra_state", "last_optimizer_state", "format_version"} <= set(state)
    assert state["format_version"] == 1
    assert_plain(state)
    extra = state["extra_state"]
    assert {"epoch", "num_updates", "best", "iterations_in_epoch", "rng"} <= set(extra)
    assert {"python", "numpy", "torch"} <= set(extra["rng"])
    assert isinstance(extra["rng"]["torch"], torch.Tensor)
    assert state["cfg"]["save_dir"] == str(base_run.dir) and state["cfg"]["batch_size"] == 8
    assert state["optimizer_history"][-1]["num_updates"] == 4
    assert state["optimizer_history"][-1]["optimizer_name"] == "AdamW"
    assert all(isinstance(v, torch.Tensor) for v in state["model"].values())
    assert state["model"]["ques_emb.weight"].shape[0] == 3
    opt = state["last_optimizer_state"]
    n_params = sum(len(g["params"]) for g in opt["param_groups"])
    # keyed by parameter index, as torch expects (the encoder's unused pooler gets no gradient, so no state)
    assert set(opt["state"]) <= set(range(n_params)) and len(opt["state"]) >= n_params - 2
    assert all("exp_avg" in s and "exp_avg_sq" in s for s in opt["state"].values())


@pytest.mark.slow
def test_history_csv_has_the_documented_columns(base_run):
    frame = pd.read_csv(base_run.dir / "history.csv")
    assert list(frame.columns) == HISTORY_COLUMNS
    first = frame.iloc[0]
    assert (first["epoch"], first["updates"]) == (1, 4)
    assert math.isfinite(first["train_loss"]) and 0 < first["train_loss"] < 1  # MSE of scores in [0, 1]
    assert first["tokens_per_s"] > 0 and first["seconds"] > 0
    assert list(base_run.out["history"][0]) == HISTORY_COLUMNS
    assert set(base_run.out["metrics"]) == {"valid", "test"}  # checkpoint_best evaluated after training


def build_trainer(args, tokenizer):
    """What ``scorelib.train`` builds before its epoch loop."""
    from scorelib.training import set_seed
    from scorelib.tasks.text_scoring import TextScoringTask

    set_seed(args.seed)
    task = TextScoringTask.setup_task(args, tokenizer)
    model = task.build_model(args)
    return Trainer(args, task, model, task.build_criterion(args))


@pytest.mark.slow
def test_rerun_with_more_epochs_resumes_optimizer_schedule_and_update_count(base_run, tokenizer, monkeypatch):
    d = base_run.dir
    saved = load_pt(d / "checkpoint_last.pt")
    assert saved["extra_state"]["num_updates"] == 4
    args = train_args(d, *BASE, "--max-epoch", "2")

    trainer = build_trainer(args, tokenizer)
    adamw = trainer.optimizer.optimizer
    assert len(adamw.state) == 0  # a fresh optimizer has no moments until loaded
    extra = trainer.load_checkpoint(d / "checkpoint_last.pt")
    progress = Progress("qwk", True)
    progress.resume(extra)
    assert (trainer.num_updates, progress.epoch, progress.iterations_in_epoch) == (4, 2, 0)
    assert trainer.scheduler.last_epoch == 4
    # the moments must sit on the parameters themselves (where AdamW.step reads them)
    params = [p for group in adamw.param_groups for p in group["params"]]
    assert len(adamw.state) == len(saved["last_optimizer_state"]["state"]) > len(params) - 3
    for i, moments in saved["last_optimizer_state"]["state"].items():
        assert params[i] in adamw.state, i
        loaded = adamw.state[params[i]]
        assert torch.equal(loaded["exp_avg"], moments["exp_avg"])
        assert torch.equal(loaded["exp_avg_sq"], moments["exp_avg_sq"])
        assert float(loaded["step"]) == 4
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, saved["model"][name]), name
    del trainer

    before = pd.read_csv(d / "history.csv")
    rec = Recorder(monkeypatch)
    out = train(args)
    assert rec.start.num_updates == 4 and rec.start.epoch == 2
    assert rec.steps_from == [4, 5, 6, 7]  # updates 5..8: none repeated, none skipped
    after = pd.read_csv(d / "history.csv")
    assert after["epoch"].tolist() == [1, 2] and after["updates"].tolist() == [4, 8]
    pd.testing.assert_series_equal(after.iloc[0][HISTORY_COLUMNS[:9]], before.iloc[0][HISTORY_COLUMNS[:9]])
    assert [row["epoch"] for row in out["history"]] == [1, 2]
    assert load_pt(d / "checkpoint2.pt")["extra_state"]["num_updates"] == 8
    assert load_pt(d / "checkpoint_2_6.pt")["extra_state"]["num_updates"] == 6
    assert load_pt(d / "checkpoint1.pt")["extra_state"]["num_updates"] == 4  # untouched


@pytest.mark.slow
def test_finetune_from_model_maps_prompt_rows_and_starts_fresh(tmp_path, monkeypatch):
    from scorelib import checkpoint_utils

    src = tmp_path / "src"
    train(train_args(src, *TINY, "--prompts", "q1,q2"))
    source = load_pt(src / "checkpoint_last.pt")
    assert source["prompts"]["ids"] == ["q1", "q2"]
    old_q2 = source["model"]["ques_emb.weight"][1]

    fresh_rows = []
    original = checkpoint_utils.load_finetune_weights

    def spy(model, state, prompts, config, path):
        fresh_rows.append((str(path), model.ques_emb.weight.detach().clone()))
        return original(model, state, prompts, config, path)

    monkeypatch.setattr(checkpoint_utils, "load_finetune_weights", spy)
    rec = Recorder(monkeypatch)
    dst = tmp_path / "dst"
    argv = [*TINY, "--prompts", "q2,q3", "--finetune-from-model", src / "checkpoint_last.pt"]
    train(train_args(dst, *argv))
    assert [p for p, _ in fresh_rows] == [str(src / "checkpoint_last.pt")]
    start = rec.start
    assert (start.num_updates, start.optimizer_state, start.scheduler_steps) == (0, 0, 0)
    assert rec.steps_from[0] == 0
    rows = start.ques_emb  # ids are now [q2, q3]
    assert torch.equal(rows[0], old_q2), "q2's row must carry over"
    assert torch.equal(rows[1], fresh_rows[0][1][1]), "q3's row must be the fresh one"
    assert not any(torch.equal(rows[1], r) for r in source["model"]["ques_emb.weight"])
    for name, value in source["model"].items():
        if name != "ques_emb.weight":
            assert torch.equal(start.model[name], value), name
    done = load_pt(dst / "checkpoint_last.pt")
    assert done["prompts"]["ids"] == ["q2", "q3"]
    assert done["extra_state"]["num_updates"] == 2

    # once checkpoint_last.pt exists, the same command resumes and --finetune-from-model is ignored
    fresh_rows.clear()
    train(train_args(dst, *argv, "--max-epoch", "2"))
    assert [p for p, _ in fresh_rows] == [str(dst / "checkpoint_last.pt")]  # only the resume loads weights
    assert rec.start.num_updates == 2 and rec.steps_from[-2:] == [2, 3]
    assert torch.equal(rec.start.ques_emb, done["model"]["ques_emb.weight"])
    assert not torch.equal(rec.start.ques_emb[0], old_q2)


@pytest.mark.slow
def test_bf16_trains_on_the_cpu(tmp_path, monkeypatch):
    rec = Recorder(monkeypatch)
    dtypes = []
    original = LOOP.train_epoch

    def hooked(args, trainer, progress, *rest):
        trainer.model.head[1].register_forward_hook(lambda m, i, o: dtypes.append((m.training, o.dtype)))
        return original(args, trainer, progress, *rest)

    monkeypatch.setattr(LOOP, "train_epoch", hooked)
    out = train(train_args(tmp_path / "bf16", *TINY, "--max-train-rows", "8", "--bf16"))
    assert rec.start.amp_dtype == torch.bfloat16 and rec.trainer.device.type == "cpu"
    assert (True, torch.bfloat16) in dtypes, "the training forward did not run under bfloat16 autocast"
    state = load_pt(tmp_path / "bf16" / "checkpoint_last.pt")
    assert state["cfg"]["bf16"] is True and state["extra_state"]["num_updates"] == 1
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state["model"].values()
               if v.is_floating_point())
    assert math.isfinite(out["history"][0]["train_loss"])


@pytest.mark.slow
def test_update_freq_2_halves_the_number_of_updates(tmp_path, base_run, monkeypatch):
    rec = Recorder(monkeypatch)
    out = train(train_args(tmp_path / "uf2", *BASE, "--update-freq", "2", "--no-epoch-checkpoints"))
    base_updates = pd.read_csv(base_run.dir / "history.csv")["updates"].iloc[0]
    assert base_updates == 4
    assert out["history"][0]["updates"] == base_updates // 2
    assert rec.steps_from == [0, 1] and rec.trainer.total_updates == 2
    assert load_pt(tmp_path / "uf2" / "checkpoint_last.pt")["extra_state"]["num_updates"] == 2
    # the interval checkpoint counts updates, not batches
    assert (tmp_path / "uf2" / "checkpoint_best.pt").is_file() and not list((tmp_path / "uf2").glob("checkpoint_1_*.pt"))


def test_is_better_follows_the_metric_direction():
    assert MAXIMIZE["rmse"] is False and MAXIMIZE["loss"] is False
    assert MAXIMIZE["pearson"] is True and MAXIMIZE["qwk"] is True

    rmse = Progress("rmse", MAXIMIZE["rmse"])
    assert rmse.is_better(2.0)  # nothing yet
    rmse.best = 2.0
    assert rmse.is_better(1.5) and not rmse.is_better(2.5) and not rmse.is_better(2.0)
    assert not rmse.is_better(float("nan")) and not rmse.is_better(None)

    pearson = Progress("pearson", MAXIMIZE["pearson"])
    pearson.best = 0.5
    assert pearson.is_better(0.6) and not pearson.is_better(0.4)
    assert Progress("loss", True).is_better(1.0)


@pytest.mark.slow
def test_patience_stops_early_and_the_best_metric_follows_the_flag(tmp_path):
    """One run checks both: lr 0 (the head's too) keeps the weights, so every validation ties the first; with
    --patience 0 the second epoch is the last, and --best-checkpoint-metric loss --maximize-best-checkpoint-metric is
    what picks the best."""
    save_dir = tmp_path / "patience"
    out = train(train_args(save_dir, *TINY, "--max-train-rows", "8", "--max-epoch", "4", "--patience", "0",
                           "--lr", "0", "--head-lr", "0", "--best-checkpoint-metric", "loss",
                           "--maximize-best-checkpoint-metric",
                           "--no-save-optimizer-state"))
    epochs = [row["epoch"] for row in out["history"]]
    assert epochs == [1, 2], epochs
    assert out["history"][0]["valid_loss"] == out["history"][1]["valid_loss"]
    extra = load_pt(save_dir / "checkpoint_last.pt")["extra_state"]
    assert extra["best"] == {"metric": "loss", "value": out["history"][0]["valid_loss"], "maximize": True}
    assert extra["bad_validations"] == 1
    assert load_pt(save_dir / "checkpoint_best.pt")["extra_state"]["epoch"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("dropout", ["0", "0.1"])
def test_compile_gives_the_eager_loss_curve(tmp_path, dropout):
    """``--compile`` (dynamic shapes) trains to the same losses as eager; its checkpoint loads without compiling.

    With dropout on (0.1, the encoder's default) as well as off: ``--compile`` has dropout drawn by torch's own
    random kernels, in the order eager draws them, so a seed gives the same masks (with inductor's own kernels,
    its default, the masks differ and that alone moved the epoch loss by ~0.3%). Tolerance: 1e-4 relative on the
    epoch losses, where inductor's fused kernels only reorder float32 sums."""
    argv = [*TINY, "--max-train-rows", "16", "--batch-size", "4", "--max-epoch", "2", "--seed", "5",
            "--encoder-dropout", dropout, "--head-dropout", dropout]
    eager = train(train_args(tmp_path / "eager", *argv))["history"]
    compiled = train(train_args(tmp_path / "compiled", *argv, "--compile"))["history"]
    for e, c in zip(eager, compiled):
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-4), (e, c)
        assert c["valid_loss"] == pytest.approx(e["valid_loss"], rel=1e-4), (e, c)
        print(f"epoch {e['epoch']}: train loss eager {e['train_loss']:.8f}, compiled {c['train_loss']:.8f}")
    state = load_pt(tmp_path / "compiled" / "checkpoint_last.pt")
    assert not any("_orig_mod" in k for k in state["model"])  # plain names: loads into an uncompiled model
    import scorelib

    scorer = scorelib.load(tmp_path / "compiled", device="cpu")
    assert 0.0 <= scorer.score("The earth is tilted.", prompt="q1") <= 3.0


class IndexDataset(torch.utils.data.Dataset):
    """Item i is i; a batch is its items as a tensor (a stand-in for ScoringDataset's __getitem__ / collater)."""

    def __len__(self):
        return 20

    def __getitem__(self, index):
        return int(index)

    def collater(self, samples):
        return torch.tensor(samples)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batch_iterator_yields_the_given_batches_in_order_with_dummies_kept(num_workers):
    from scorelib.data.scoring_dataset import batch_iterator

    batches = [[5, 1, 9], [0], None, [2, 3, 4, 7], None]  # None: a dummy batch of a DDP rank
    rng = torch.random.get_rng_state()
    out = list(batch_iterator(IndexDataset(), batches, num_workers))
    assert [None if b is None else b.tolist() for b in out] == batches
    assert torch.equal(torch.random.get_rng_state(), rng)  # the training's random stream (dropout) is untouched
    assert list(batch_iterator(IndexDataset(), [None, None], num_workers)) == [None, None]
    assert list(batch_iterator(IndexDataset(), [], num_workers)) == []
    stopped = batch_iterator(IndexDataset(), batches, num_workers)  # --max-update: stopped part way, closed
    assert next(stopped).tolist() == [5, 1, 9]
    stopped.close()


def test_negative_num_workers_is_refused(capsys):
    with pytest.raises(SystemExit):
        train_args("unused", "--num-workers", "-1")
    assert "--num-workers must be >= 0, got -1" in capsys.readouterr().err


@pytest.mark.slow
def test_num_workers_trains_to_the_same_losses_and_weights(tmp_path):
    """--num-workers 2 loads the same batches in the same order as 0 (in this process): bit-identical training,
    with dropout on so that a loader drawing from torch's random stream would show."""
    argv = [*TINY, "--batch-size", "4", "--encoder-dropout", "0.1", "--head-dropout", "0.1"]  # 1 epoch, 4 updates
    runs = {n: train(train_args(tmp_path / f"workers{n}", *argv, "--num-workers", n))["history"] for n in (0, 2)}
    loss_columns = ["train_loss", "valid_loss"]
    assert [[row[c] for c in loss_columns] for row in runs[2]] == [[row[c] for c in loss_columns] for row in runs[0]]
    weights = {n: load_pt(tmp_path / f"workers{n}" / "checkpoint_last.pt")["model"] for n in (0, 2)}
    assert weights[0].keys() == weights[2].keys()
    assert all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_scorelib_train_adds_the_steps_the_options_ask_for_in_order():
    """--stack tfidf, then --fit-cutpoints on the blend: the loop gets the extras as AfterTraining steps."""
    from scorelib.cli.train import after_training_steps
    from scorelib.cutpoints.thresholds import CutpointStep
    from scorelib.stack.tfidf import StackStep

    assert after_training_steps(SimpleNamespace(stack=None, fit_cutpoints=False)) == []
    (alone,) = after_training_steps(SimpleNamespace(stack=None, fit_cutpoints=True))
    assert isinstance(alone, CutpointStep) and alone.blend is None
    stack, cut = after_training_steps(SimpleNamespace(stack="tfidf", fit_cutpoints=True))
    assert isinstance(stack, StackStep) and isinstance(cut, CutpointStep) and cut.blend is stack


@pytest.mark.slow
def test_the_loop_runs_an_after_training_step_and_lets_it_write_a_split(tmp_path):
    """training.main calls check (before any file), run (on checkpoint_best) and write_split (per split), in order."""
    from scorelib import training

    calls = []

    class Recorder(training.AfterTraining):
        def check(self, task):
            calls.append(("check", (tmp_path / "run").exists()))

        def run(self, trainer, best):
            calls.append(("run", best.name))

        def write_split(self, trainer, best, ds, preds01, results_path, split):
            calls.append(("write", split, len(ds)))
            if split != "test":
                return None  # the loop writes valid's files itself
            middle = np.full_like(preds01, 0.5)  # the test split's files, the step's way: every prediction mid-range
            return training.write_split(best, ds, middle, trainer.task.prompts, results_path, split)

    out = training.main(train_args(tmp_path / "run", *TINY), steps=[Recorder()])
    assert calls[0] == ("check", False)  # checked before the save dir existed
    assert calls[1:] == [("run", "checkpoint_best.pt"), ("write", "valid", 8), ("write", "test", 8)]
    results = tmp_path / "run" / "results"
    test = pd.read_csv(results / "result-checkpoint_best-test.csv")
    valid = pd.read_csv(results / "result-checkpoint_best-valid.csv")
    assert set(out["metrics"]) == {"valid", "test"}
    from scorelib import PromptTable

    mid = {p: (lo + hi) / 2 for p, (lo, hi) in PromptTable.load(tmp_path / "run" / "prompts.json").ranges.items()}
    assert np.allclose(test["pred"], test["prompt"].astype(str).map(mid))  # the step's predictions
    assert not np.allclose(valid["pred"], valid["prompt"].astype(str).map(mid))  # the model's


def test_small_valid_split_and_few_test_rows_are_warned(tmp_path, log_of):
    """A valid split of a few rows per prompt cannot rank epochs (scorelib-cv warns per fold; scorelib-train warns
    before training), and checkpoint_best's figures on fewer than 30 rows carry a warning in the log."""
    out = train(train_args(tmp_path / "ckpt", "--max-train-rows", "12", "--max-eval-rows", "6",
                           "--no-epoch-checkpoints", "--no-save-optimizer-state"))
    text = log_of.text
    assert "the valid split has fewer than 30 rows for prompt(s) q1 (2), q2 (2), q3 (2): too few to rank epochs" in text
    assert "checkpoint_best on test: fewer than 30 labeled rows" in text
    assert "checkpoint_best on test: n=6; mean of per-prompt QWK" in text and "pooled over prompts" in text
    assert out["metrics"]["test"]["warnings"]
