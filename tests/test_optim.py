"""The regression recipe's options: --layer-lr-decay, --head-lr, --reinit-layers and --pooling attention."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import module_scratch, train_args
from scorelib.optim.layerwise import encoder_layers
from scorelib.models.scoring_model import AttentionPool, ScoringModel, default_model_path, load_encoder, pool

LR, HEAD_LR, DECAY = 1e-4, 1e-3, 0.5


def build(args):
    from scorelib.tasks.text_scoring import TextScoringTask

    task = TextScoringTask.setup_task(args)
    task.load_dataset("train")
    return task, task.build_model(args)


def trainer_of(tmp_path, *extra):
    from scorelib.trainer import Trainer

    args = train_args(tmp_path / "run", "--max-train-rows", "16", *extra)
    task, model = build(args)
    return Trainer(args, task, model, task.build_criterion(args))


def lr_of(trainer) -> dict[str, float]:
    """Each parameter's learning rate in the trainer's optimizer, by name."""
    by_id = {id(p): g["lr"] for g in trainer.optimizer.optimizer.param_groups for p in g["params"]}
    return {name: by_id[id(p)] for name, p in trainer.model.named_parameters()}


def test_default_trains_the_head_at_head_lr_and_the_encoder_at_lr(tmp_path):
    """The default (issue 20's study): the encoder at --lr, everything above it at --head-lr's 5e-4."""
    from scorelib.models.scoring_model import HEAD_LR as DEFAULT_HEAD_LR

    trainer = trainer_of(tmp_path / "default")
    assert trainer.args.head_lr == DEFAULT_HEAD_LR == 5e-4 and trainer.args.lr != DEFAULT_HEAD_LR
    rates = lr_of(trainer)
    assert {r for n, r in rates.items() if n.startswith("encoder.")} == {trainer.args.lr}
    assert {r for n, r in rates.items() if not n.startswith("encoder.")} == {DEFAULT_HEAD_LR}
    assert {"ques_emb.weight", trainer.model.output_layer_name + ".weight"} <= {
        n for n, r in rates.items() if r == DEFAULT_HEAD_LR}


def test_default_encoder_dropout_is_off_and_config_keeps_the_encoders_own(tmp_path):
    """The default (issue 20's second round): the encoder's hidden and attention dropout 0, in train mode too;
    ``--encoder-dropout config`` keeps the encoder config's (MiniLM's 0.1), a number sets both."""
    from transformers import AutoConfig

    from scorelib.models.scoring_model import ENCODER_DROPOUT

    pretrained = AutoConfig.from_pretrained(default_model_path())
    assert ENCODER_DROPOUT == 0.0 and pretrained.hidden_dropout_prob > 0
    for flags, want in (((), 0.0), (("--encoder-dropout", "config"), pretrained.hidden_dropout_prob),
                        (("--encoder-dropout", "0.2"), 0.2)):
        args = train_args(tmp_path / "run", "--max-train-rows", "16", *flags)
        model = build(args)[1]
        config = model.encoder.config
        assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (want, want), flags
        rates = {m.p for m in model.encoder.modules() if isinstance(m, torch.nn.Dropout)}
        assert rates == {want}, (flags, rates)


def test_encoder_dropout_that_is_neither_a_number_nor_config_is_refused(capsys):
    from scorelib.options import parse_args

    with pytest.raises(SystemExit) as e:
        parse_args(["--encoder-dropout", "none"])
    assert e.value.code == 2
    assert "--encoder-dropout: expected a probability in [0, 1) or 'config', got 'none'" in capsys.readouterr().err


def test_head_lr_equal_to_lr_gives_the_two_groups_of_earlier_releases(tmp_path):
    """``--head-lr`` = ``--lr``: the groups before these options (decay, then no decay, same parameters in the same
    order, all at --lr), so such a run trains as earlier releases did."""
    trainer = trainer_of(tmp_path, "--head-lr", "8e-5", "--lr", "8e-5")
    decay, no_decay = [], []  # the construction of main before the recipe options
    for name, p in trainer.model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "ques_emb" in name else decay).append(p)
    groups = trainer.optimizer.optimizer.param_groups
    assert len(groups) == 2
    assert [list(map(id, g["params"])) for g in groups] == [list(map(id, decay)), list(map(id, no_decay))]
    assert [g["weight_decay"] for g in groups] == [trainer.args.weight_decay, 0.0]
    assert [g["initial_lr"] for g in groups] == [trainer.args.lr] * 2
    assert not hasattr(trainer.model, "attention_pool")
    pretrained = load_encoder(default_model_path()).state_dict()
    assert all(torch.equal(v, pretrained[k]) for k, v in trainer.model.encoder.state_dict().items())


def test_layer_lr_decay_and_head_lr_set_each_groups_rate(tmp_path):
    trainer = trainer_of(tmp_path, "--lr", LR, "--layer-lr-decay", DECAY, "--head-lr", HEAD_LR,
                         "--pooling", "attention", "--warmup-updates", "0", "--max-epoch", "4")
    num_layers = len(encoder_layers(trainer.model.encoder))
    rates = lr_of(trainer)
    for name, rate in rates.items():
        if not name.startswith("encoder."):  # head, prompt embedding, attention pooling
            assert rate == pytest.approx(HEAD_LR), name
        elif name.startswith("encoder.embeddings."):  # the lowest
            assert rate == pytest.approx(LR * DECAY ** num_layers), name
        elif ".layer." in name:
            i = int(name.split(".layer.")[1].split(".")[0])
            assert rate == pytest.approx(LR * DECAY ** (num_layers - 1 - i)), name
    assert any(n.startswith("attention_pool.") for n in rates)
    assert min(rates.values()) == pytest.approx(LR * DECAY ** num_layers)
    for g in trainer.optimizer.optimizer.param_groups:  # weight decay split kept inside each rate
        names = [n for n, p in trainer.model.named_parameters() if any(p is q for q in g["params"])]
        no_decay = [n for n in names if "LayerNorm" in n or n.endswith("bias") or "ques_emb" in n]
        assert g["weight_decay"] == (0.0 if no_decay else trainer.args.weight_decay)
        assert not no_decay or len(no_decay) == len(names)
    before = [g["lr"] for g in trainer.optimizer.optimizer.param_groups]
    trainer.optimizer.optimizer.step()  # the linear schedule scales every group by the same factor
    trainer.scheduler.step()
    after = [g["lr"] for g in trainer.optimizer.optimizer.param_groups]
    factors = [a / b for a, b in zip(after, before)]
    assert 0 < factors[0] < 1 and factors == pytest.approx([factors[0]] * len(factors))
    assert trainer.get_lr() == pytest.approx(LR * factors[0])


def test_reinit_layers_changes_only_the_top_layers(tmp_path):
    from scorelib.options import parse_args

    args = parse_args(["--reinit-layers", "2", "--save-dir", str(tmp_path), "--cpu"])
    _, model = build(args)
    pretrained = load_encoder(default_model_path())
    new, old = model.encoder.state_dict(), pretrained.state_dict()
    n = len(encoder_layers(pretrained))
    top = tuple(f"encoder.layer.{i}." for i in range(n - 2, n))
    for key, value in new.items():
        if not key.startswith(top):
            assert torch.equal(value, old[key]), key
        elif key.endswith("LayerNorm.weight"):
            assert torch.all(value == 1) and not torch.equal(value, old[key]), key
        elif key.endswith("bias"):
            assert torch.all(value == 0) and not torch.equal(value, old[key]), key
        else:
            assert not torch.equal(value, old[key]), key
    changed = [k for k in new if k.startswith(top) and k.endswith("dense.weight")]
    assert changed and all(not torch.equal(new[k], old[k]) for k in changed)
    std = model.encoder.config.initializer_range
    for k in changed:  # the encoder's own initializer: normal(0, initializer_range)
        assert float(new[k].std()) == pytest.approx(std, rel=0.1)


def test_attention_pooling_ignores_padding():
    torch.manual_seed(0)
    attn = AttentionPool(8)
    hidden = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    out = pool(hidden, mask, "attention", attn)
    junk = hidden.clone()
    junk[0, 4:] = 100 * torch.randn(2, 8)  # what padding holds must not matter
    assert torch.equal(pool(junk, mask, "attention", attn), out)
    assert torch.allclose(out[0], pool(hidden[:1, :4], mask[:1, :4], "attention", attn)[0], atol=1e-6)
    assert not torch.allclose(out[1], pool(hidden[1:, :4], mask[1:, :4], "attention", attn)[0])


def test_attention_pooled_model_scores_a_padded_text_the_same(tokenizer):
    torch.manual_seed(0)
    model = ScoringModel(load_encoder(default_model_path()), num_prompts=1, pooling="attention").eval()
    alone = tokenizer(["a short answer"], return_tensors="pt")
    padded = tokenizer(["a short answer", "a much longer answer that forces padding on the first one"],
                       padding=True, return_tensors="pt")
    with torch.no_grad():
        a = model(alone["input_ids"], alone["attention_mask"], torch.zeros(1, dtype=torch.long))["encoder_out"]
        b = model(padded["input_ids"], padded["attention_mask"], torch.zeros(2, dtype=torch.long))["encoder_out"]
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]
    assert torch.allclose(a[0], b[0], atol=1e-5)


@pytest.mark.parametrize("flag, value", [("--layer-lr-decay", "0"), ("--layer-lr-decay", "1.5"),
                                         ("--head-lr", "-1e-4"), ("--reinit-layers", "-1")])
def test_out_of_range_values_refused(flag, value, capsys):
    from scorelib.options import parse_args

    with pytest.raises(SystemExit) as e:
        parse_args([flag, value])
    assert e.value.code == 2 and flag in capsys.readouterr().err


def test_reinit_more_layers_than_the_encoder_has_refused(tmp_path):
    from scorelib.errors import OptionError
    from scorelib.options import parse_args

    with pytest.raises(OptionError, match="--reinit-layers 7: the encoder has only 6 layers"):
        build(parse_args(["--reinit-layers", "7", "--save-dir", str(tmp_path), "--cpu"]))


@pytest.fixture(scope="module")
def recipe_run(request, tmp_path_factory):
    from scorelib import train

    with module_scratch(request, tmp_path_factory, "recipe") as base:
        out = train(train_args(base / "ckpt", "--no-epoch-checkpoints", "--no-save-optimizer-state",
                               "--pooling", "attention", "--layer-lr-decay", "0.8", "--head-lr", "3e-4",
                               "--reinit-layers", "1", "--max-update", "2"))
        yield out


@pytest.mark.slow
def test_checkpoint_with_the_new_options_loads_and_scores(recipe_run):
    import scorelib
    from scorelib.checkpoint_utils import load_checkpoint

    save_dir = recipe_run["save_dir"]
    state = load_checkpoint(save_dir / "checkpoint_best.pt")
    assert state["cfg"]["pooling"] == "attention" and state["cfg"]["reinit_layers"] == 1
    assert state["cfg"]["layer_lr_decay"] == 0.8 and state["cfg"]["head_lr"] == 3e-4
    scorer = scorelib.load(save_dir, device="cpu")
    weights = scorer.model.state_dict()
    assert any(k.startswith("attention_pool.") for k in weights)
    assert all(torch.equal(v, state["model"][k]) for k, v in weights.items())
    score = scorer.score("Plants use light to make sugar.", prompt="q1")
    lo, hi = scorer.table.ranges["q1"]
    assert lo <= score <= hi


@pytest.mark.slow
def test_without_stack_flag_nothing_changes(recipe_run):
    """No --stack: no stack folder, the result files' columns and the metrics' keys as before."""
    import scorelib
    from scorelib.results import COLUMNS

    save_dir = recipe_run["save_dir"]
    assert not (save_dir / "stack").exists()
    frame = pd.read_csv(save_dir / "results" / "result-checkpoint_best-valid.csv")
    assert list(frame.columns) == COLUMNS
    assert not {"encoder", "stack", "blend_weight"} & set(recipe_run["metrics"]["valid"])
    assert scorelib.load(save_dir, device="cpu").stack is None


@pytest.mark.slow
def test_a_run_from_before_the_head_lr_default_resumes_only_at_its_own_rate(tmp_path):
    """A checkpoint saved before --head-lr existed (no head_lr in its cfg) trained its head at --lr: resuming it
    under the new default is refused in one line naming --head-lr, and with --head-lr at its --lr it resumes into
    the optimizer's two groups of then."""
    from scorelib import train
    from scorelib.errors import CheckpointError

    save = tmp_path / "old"
    first = train(train_args(save, "--max-train-rows", "16", "--max-epoch", "1", "--head-lr", "8e-5", "--lr", "8e-5"))
    state = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    del state["cfg"]["head_lr"]  # as saved by scorelib before issue 20
    torch.save(state, save / "checkpoint_last.pt")
    with pytest.raises(CheckpointError, match=r"cannot resume with --head-lr giving 0.0005: the checkpoint was "
                                              r"trained with 8e-05"):
        train(train_args(save, "--max-train-rows", "16", "--max-epoch", "2", "--lr", "8e-5"))
    train(train_args(save, "--max-train-rows", "16", "--max-epoch", "2", "--lr", "8e-5", "--head-lr", "8e-5"))
    resumed = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    updates = first["history"][-1]["updates"]
    assert updates > 0 and resumed["extra_state"]["num_updates"] == 2 * updates and resumed["extra_state"]["epoch"] == 2
    assert len(resumed["last_optimizer_state"]["param_groups"]) == 2



@pytest.mark.slow
def test_a_run_from_before_the_dropout_default_resumes_only_with_its_own_dropout(tmp_path):
    """A checkpoint trained with the encoder config's dropout (saved before --encoder-dropout defaulted to 0, or
    without the option in its cfg) is refused under the new default in one line naming --encoder-dropout, and
    resumes with ``--encoder-dropout config``."""
    from scorelib import train
    from scorelib.errors import CheckpointError

    save = tmp_path / "old"
    train(train_args(save, "--max-train-rows", "16", "--max-epoch", "1", "--encoder-dropout", "config"))
    state = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    del state["cfg"]["encoder_dropout"]  # as saved by scorelib before the option existed
    torch.save(state, save / "checkpoint_last.pt")
    with pytest.raises(CheckpointError, match=r"cannot resume with --encoder-dropout giving 0.0: the checkpoint "
                                              r"was trained with config"):
        train(train_args(save, "--max-train-rows", "16", "--max-epoch", "2"))
    train(train_args(save, "--max-train-rows", "16", "--max-epoch", "2", "--encoder-dropout", "config"))
    resumed = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    assert resumed["extra_state"]["epoch"] == 2 and resumed["cfg"]["encoder_dropout"] is None
