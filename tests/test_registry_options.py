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


# ---------------------------------------------------------------- every numeric option of every command has a range
def _commands():
    """Each command: its parser and the arguments it needs before an option (nothing is read: the check refuses
    first)."""
    from scorelib import options
    from scorelib.cli import options as cli_options

    return {"train": (lambda: options.get_training_parser([]), ["--save-dir", "{tmp}/save"]),
            "cv": (lambda: cli_options.get_cv_parser([]), ["--save-dir", "{tmp}/save"]),
            "eval": (cli_options.get_eval_parser, ["{tmp}/nowhere"]),
            "score": (cli_options.get_score_parser, ["{tmp}/nowhere", "a text"]),
            "probe": (lambda: cli_options.get_probe_parser(()), ["{tmp}/nowhere"]),
            "report": (cli_options.get_report_parser, ["{tmp}/nowhere"])}


def numeric(action) -> bool:
    """An option whose value is a number: its type turns "1" into an int or a float."""
    if not action.option_strings or action.type is None or action.nargs == 0:
        return False
    try:
        value = action.type("1")
    except Exception:
        return False
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def outside(r, is_float: bool) -> list[str]:
    """Values just outside ``r`` (and NaN and infinity for a float)."""
    ends = ([r.low if r.open_low else r.low - 1] if r.low is not None else []) + \
           ([r.high if r.open_high else r.high + 1] if r.high is not None else [])
    return [repr(float(v)) if is_float else str(int(v)) for v in ends] + (["nan", "inf"] if is_float else [])


def test_every_numeric_option_of_every_command_is_refused_outside_its_range(tmp_path, capsys):
    import importlib

    from scorelib.options import RANGES

    ranges = {r.dest: r for r in RANGES}
    tried, missing = [], []
    for command, (make, head) in _commands().items():
        cli_main = importlib.import_module(f"scorelib.cli.{command}").cli_main
        for action in make()._actions:
            if not numeric(action):
                continue
            if action.dest not in ranges:
                missing.append(f"scorelib-{command} {action.option_strings[0]}")
                continue
            flag = "--" + action.dest.replace("_", "-")
            assert flag in action.option_strings, (command, action.option_strings)
            bad_values = outside(ranges[action.dest], isinstance(action.type("1"), float))
            assert bad_values, f"{flag}: its range has no bound and it is no float: nothing lies outside it"
            for bad in bad_values:
                values = [bad] * (action.nargs if isinstance(action.nargs, int) else 1)  # --score-range: MIN MAX
                argv = [a.format(tmp=tmp_path) for a in head] + [flag, *values]
                capsys.readouterr()
                try:
                    status = cli_main(argv)
                except SystemExit as e:
                    status = e.code
                err = capsys.readouterr().err
                lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
                assert status == 2 and len(lines) == 1, (command, argv, err)
                assert lines[0].startswith(f"scorelib-{command}: error: {flag} must be {ranges[action.dest].rule}, "
                                           f"got "), (command, argv, lines[0])
                tried.append((command, flag, bad))
    assert not missing, f"numeric options without an entry in scorelib.options.RANGES: {', '.join(missing)}"
    assert not (tmp_path / "save").exists()
    flags = {flag for _, flag, _ in tried}
    assert {"--clip-norm", "--seed", "--max-train-rows", "--max-eval-rows", "--weight-decay", "--warmup-updates",
            "--save-interval-updates", "--log-interval", "--num-workers", "--bootstrap", "--max-rows"} <= flags
    assert {c for c, _, _ in tried} == {"train", "cv", "eval", "probe", "report"}  # score has no numeric option


@pytest.mark.parametrize("argv, line", [
    (["--clip-norm", "-1"], "--clip-norm must be >= 0 (0: no clipping), got -1"),
    (["--seed", str(2 ** 33)], "--seed must be in [0, 2**32) (numpy's seeds), got 8589934592"),
    (["--max-train-rows", "-1"], "--max-train-rows must be positive (leave it out for every row), got -1"),
    (["--lr", "inf"], "--lr must be >= 0, got inf"),
    (["--score-range", "nan", "5"], "--score-range must be finite (MIN MAX), got nan 5"),
    (["--score-range", "5", "1"], "--score-range 5 1: MIN must be below MAX"),
    (["--lr-scheduler", "bogus"], "argument --lr-scheduler: invalid choice: 'bogus' (choose from 'linear'"),
    (["--lr-scheduler", "reduce_lr_on_plateau"], "argument --lr-scheduler: invalid choice"),
])
def test_the_issue_cases_are_refused_with_their_rule(argv, line, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    assert f"error: {line}" in capsys.readouterr().err


def test_the_ends_of_the_ranges_are_accepted():
    args = parse_args(["--seed", str(2 ** 32 - 1), "--split-seed", "0", "--clip-norm", "0", "--weight-decay", "0",
                       "--warmup-updates", "0", "--max-train-rows", "1", "--log-interval", "1", "--patience", "-1",
                       "--layer-lr-decay", "1", "--head-dropout", "0", "--valid-fraction", "0"])
    assert args.seed == 2 ** 32 - 1 and args.clip_norm == 0 and args.max_train_rows == 1
    import numpy as np

    np.random.seed(args.seed)  # numpy takes the top of the range


def test_every_lr_scheduler_choice_builds_and_steps():
    """--lr-scheduler's choices are transformers' SchedulerType names that Trainer's get_scheduler call can build
    and step without a metric."""
    import torch
    from transformers import get_scheduler
    from transformers.trainer_utils import SchedulerType

    from scorelib.options import LR_SCHEDULERS

    assert set(LR_SCHEDULERS) <= {s.value for s in SchedulerType}
    for name in LR_SCHEDULERS:
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=2, num_training_steps=10)
        for _ in range(3):
            optimizer.step()
            scheduler.step()
    parser_choices = next(a.choices for a in _commands()["train"][0]()._actions if a.dest == "lr_scheduler")
    assert tuple(parser_choices) == LR_SCHEDULERS


def test_tensorboard_logdir_naming_a_file_is_refused(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    (tmp_path / "tb").write_text("a file")
    for logdir in (tmp_path / "tb", tmp_path / "tb" / "sub"):
        with pytest.raises(SystemExit):
            parse_args(["--save-dir", str(tmp_path / "save"), "--tensorboard-logdir", str(logdir)])
        assert f"--tensorboard-logdir {logdir}: {tmp_path / 'tb'} is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "tb2").mkdir()
    (tmp_path / "tb2" / "save").write_text("a file where the run's folder goes")
    with pytest.raises(SystemExit):
        parse_args(["--save-dir", str(tmp_path / "save"), "--tensorboard-logdir", str(tmp_path / "tb2")])
    assert "tb2/save is a file, not a folder" in capsys.readouterr().err


def test_qwk_without_a_step_is_refused_where_no_step_can_come(tmp_path, capsys):
    data = tmp_path / "all.csv"
    data.write_text("key,prompt,text,score\nk1,a,an answer,1\n")
    with pytest.raises(SystemExit):
        parse_args([str(data), "--best-checkpoint-metric", "qwk"])
    assert "--best-checkpoint-metric qwk needs each score's step" in capsys.readouterr().err
    # a step from --score-step, a layout's, a ranges file (its step column, read later) or the demo data's: passes
    for extra in (["--score-step", "1"], ["--layout", "asap-aes"], ["--score-ranges", "r.csv"]):
        parse_args([str(data), "--best-checkpoint-metric", "qwk", *extra])
    parse_args(["--best-checkpoint-metric", "qwk"])
