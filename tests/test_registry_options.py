"""Tests for the registries, ``--user-dir`` plugins and option parsing (scorelib.registry, scorelib.options)."""
import sys
import textwrap

import pytest

from scorelib import registry
from scorelib.options import FAST_DEFAULTS, parse_args
from scorelib.registry import import_user_dir, register_criterion, register_model, register_task

FAIRSEQ_FLAGS = ["--task", "--save-dir", "--finetune-from-model", "--restore-file", "--max-tokens", "--batch-size",
                 "--max-epoch", "--max-update", "--lr", "--warmup-updates", "--clip-norm", "--update-freq",
                 "--patience", "--best-checkpoint-metric", "--maximize-best-checkpoint-metric",
                 "--save-interval-updates", "--no-epoch-checkpoints", "--seed", "--fp16", "--bf16", "--cpu",
                 "--num-workers", "--log-format", "--no-progress-bar"]
TASK_FLAGS = ["--layout", "--key-column", "--prompt-column", "--text-column", "--context-column", "--score-column",
              "--score-range", "--score-ranges", "--score-step", "--max-length", "--long-text", "--chunk-stride",
              "--encoding", "--valid-fraction", "--test-fraction", "--max-train-rows", "--max-eval-rows",
              "--model-name-or-path", "--pooling"]


@pytest.fixture(autouse=True)
def clean_registries():
    """Undo every registration and plugin import a test makes."""
    saved = [dict(r) for r in (registry.TASK_REGISTRY, registry.MODEL_REGISTRY, registry.CRITERION_REGISTRY)]
    modules = set(sys.modules)
    yield
    for r, old in zip((registry.TASK_REGISTRY, registry.MODEL_REGISTRY, registry.CRITERION_REGISTRY), saved):
        r.clear()
        r.update(old)
    for name in set(sys.modules) - modules:
        if name.startswith("sl_plugin"):
            del sys.modules[name]


def _make_class(base=object):
    class Thing(base):
        pass

    return Thing


@pytest.mark.parametrize("register, table", [(register_task, "TASK_REGISTRY"), (register_model, "MODEL_REGISTRY"),
                                             (register_criterion, "CRITERION_REGISTRY")])
def test_reregistering_the_same_class_replaces_it(register, table):
    first, second = _make_class(), _make_class()  # same module and qualname, as a re-run notebook cell
    assert first is not second
    register("thing_x")(first)
    register("thing_x")(second)
    assert getattr(registry, table)["thing_x"] is second
    assert second.registry_name == "thing_x"


def test_a_different_class_under_a_taken_name_is_refused():
    register_task("thing_y")(_make_class())

    class Other:
        pass

    with pytest.raises(ValueError, match=r"cannot register task 'thing_y'.*taken by"):
        register_task("thing_y")(Other)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task 'nope'.*text_scoring"):
        parse_args(["--task", "nope"])


PLUGIN_TASK = textwrap.dedent('''
    from scorelib.registry import register_task
    from scorelib.tasks.text_scoring import TextScoringTask


    @register_task("my_task")
    class MyTask(TextScoringTask):
        @staticmethod
        def add_args(parser):
            TextScoringTask.add_args(parser)
            parser.add_argument("--my-arg", type=int, default=1)
''')


def _plugin(tmp_path, name, with_init=True):
    folder = tmp_path / name
    (folder / "tasks").mkdir(parents=True)
    (folder / "tasks" / "my_task.py").write_text(PLUGIN_TASK)
    if with_init:
        (folder / "__init__.py").write_text("LOADED = True\n")
    return folder


def test_user_dir_registers_a_task_with_its_own_argument(tmp_path):
    folder = _plugin(tmp_path, "sl_plugin_a")
    args = parse_args(["--user-dir", str(folder), "--task", "my_task", "--my-arg", "3", "--save-dir", "x"])
    assert args.task == "my_task" and args.my_arg == 3
    assert args.layout == "table"  # the base task's data arguments are still there
    assert sys.modules["sl_plugin_a"].LOADED is True
    assert registry.TASK_REGISTRY["my_task"].__name__ == "MyTask"
    # without --user-dir the flag is unknown to the parser of the default task
    with pytest.raises(SystemExit):
        parse_args(["--my-arg", "3"])


def test_user_dir_imported_twice_replaces_its_classes(tmp_path):
    folder = _plugin(tmp_path, "sl_plugin_b")
    assert import_user_dir(folder) == "sl_plugin_b"
    first = registry.TASK_REGISTRY["my_task"]
    import_user_dir(folder)
    assert registry.TASK_REGISTRY["my_task"] is not first


def test_user_dir_without_init(tmp_path):
    folder = _plugin(tmp_path, "sl_plugin_c", with_init=False)
    (folder / "extra.py").write_text(textwrap.dedent('''
        from scorelib.registry import register_criterion
        from scorelib.criterions.score_mse import ScoreMSECriterion


        @register_criterion("my_mse")
        class MyMSE(ScoreMSECriterion):
            pass
    '''))
    args = parse_args(["--user-dir", str(folder), "--task", "my_task", "--criterion", "my_mse", "--my-arg", "5"])
    assert args.my_arg == 5 and args.criterion == "my_mse"
    assert "my_mse" in registry.CRITERION_REGISTRY


def test_nonexistent_user_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--user-dir .*nowhere.*not a folder"):
        parse_args(["--user-dir", str(tmp_path / "nowhere")])


def test_user_dir_with_a_bad_folder_name(tmp_path):
    folder = tmp_path / "my-plugin"
    folder.mkdir()
    with pytest.raises(ValueError, match="valid Python identifier"):
        import_user_dir(folder)


def test_fairseq_flag_names_and_task_args_exist(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in FAIRSEQ_FLAGS + TASK_FLAGS:
        assert flag in text, flag


def test_fairseq_flags_parse():
    args = parse_args(["--task", "text_scoring", "--save-dir", "s", "--finetune-from-model", "m.pt", "--restore-file",
                       "r.pt", "--max-tokens", "1000", "--batch-size", "7", "--max-epoch", "3", "--max-update", "9",
                       "--lr", "1e-4", "--warmup-updates", "2", "--clip-norm", "0.5", "--update-freq", "2",
                       "--patience", "4", "--best-checkpoint-metric", "rmse", "--maximize-best-checkpoint-metric",
                       "--save-interval-updates", "5", "--no-epoch-checkpoints", "--seed", "11", "--bf16", "--cpu",
                       "--num-workers", "0", "--log-format", "json", "--score-range", "0", "5", "--layout", "asap-aes"])
    assert (args.save_dir, args.finetune_from_model, args.restore_file) == ("s", "m.pt", "r.pt")
    assert (args.max_tokens, args.batch_size, args.max_epoch, args.max_update) == (1000, 7, 3, 9)
    assert (args.lr, args.warmup_updates, args.clip_norm, args.update_freq) == (1e-4, 2, 0.5, 2)
    assert (args.patience, args.best_checkpoint_metric, args.maximize_best_checkpoint_metric) == (4, "rmse", True)
    assert (args.save_interval_updates, args.no_epoch_checkpoints, args.seed) == (5, True, 11)
    assert args.bf16 and args.cpu and not args.fp16 and args.log_format == "json"
    assert args.score_range == [0.0, 5.0] and args.layout == "asap-aes"


def test_no_progress_bar_means_simple_log():
    assert parse_args(["--no-progress-bar"]).log_format == "simple"
    assert parse_args(["--no-progress-bar", "--log-format", "json"]).log_format == "json"


def test_fast_mode_changes_defaults_but_flags_win(monkeypatch):
    monkeypatch.setenv("SCORELIB_FAST", "0")
    slow = parse_args([])
    monkeypatch.setenv("SCORELIB_FAST", "1")
    fast = parse_args([])
    for name, value in FAST_DEFAULTS.items():
        assert getattr(fast, name) == value
        assert getattr(slow, name) != value
    explicit = parse_args(["--max-epoch", "7", "--max-train-rows", "10"])
    assert explicit.max_epoch == 7 and explicit.max_train_rows == 10
    assert explicit.max_eval_rows == FAST_DEFAULTS["max_eval_rows"]


def test_fp16_with_bf16_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--fp16", "--bf16"])
    assert e.value.code == 2
    assert "--fp16 and --bf16" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--max-tokens", "--batch-size", "--update-freq"])
def test_non_positive_sizes_are_refused(flag, capsys):
    with pytest.raises(SystemExit):
        parse_args([flag, "0"])
    assert f"{flag} must be positive" in capsys.readouterr().err
