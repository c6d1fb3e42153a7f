"""``scorelib-eval``: a saved checkpoint (or a CV dir's fold ensemble) on a data split, result files and report.

Mirrors fairseq's ``fairseq_cli/validate.py``: the model and its options come from the checkpoint;
data options the user does not give are taken from the training run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from scorelib import checkpoint_utils, locks, options
from scorelib.cli import options as cli_options
from scorelib.errors import OptionError
from scorelib.logging.console import run, setup_logging
from scorelib.metrics import summary_line, warnings_of
from scorelib.training import RESULT_FILES
from scorelib.writers import check_inputs_kept, results_dir

# scorelib-eval's own options, never taken from the checkpoint
EVAL_OWN = ("split", "results_path", "cpu", "bf16", "report", "group_column", "second_score_column", "bootstrap",
            "min_n_per_group")


def cli_main(argv=None) -> int:
    """``scorelib-eval SAVE_DIR_OR_CHECKPOINT [--split S] [data arguments]``."""
    setup_logging()

    def job():
        import tempfile

        from scorelib.cli.datasets import describe_data, resolve

        parser = describe_data(cli_options.get_eval_parser())
        with tempfile.TemporaryDirectory(prefix="scorelib-eval-data-") as tmp:  # a data set's table, while it runs
            args = resolve(parser, parser.parse_intermixed_args(argv), options.check_args, folder=tmp)
            eval_checkpoint(args, parser)  # SAVE_DIR --split test DATA

    return run("scorelib-eval", job)


def eval_options(args, parser, cfg: dict, traits) -> argparse.Namespace:
    """The options of an evaluation: those given, else the training run's (``cfg``), as a new namespace.

    With another table (DATA given), the training data's column names and row subsets do not apply; the
    model's traits are still looked up by name.
    """
    given = {k for k, v in vars(args).items() if v != parser.get_default(k)}
    merged = dict(vars(args))
    for key, value in cfg.items():
        if key not in merged or key in given or key in EVAL_OWN:
            continue
        if "data" in given and (key == "sheet" or key.endswith("_column") or key.startswith("max_") and
                                key.endswith("_rows")):
            continue
        merged[key] = value
    merged["seed"] = cfg["seed"]
    merged["score_column"] = merged["score_column"] or ",".join(traits) or None
    return argparse.Namespace(**merged)


def eval_checkpoint(args, parser) -> dict:
    """Evaluate a saved checkpoint (or a CV dir's fold ensemble): data options not given come from its training run."""
    from scorelib.hub.ensemble import is_cv_dir, read_cv_info
    from scorelib.hub.scorer import load, resolve_checkpoint
    from scorelib.models.scoring_model import check_window
    from scorelib.stack.tfidf import write_scorer_results
    from scorelib.tasks.text_scoring import TextScoringTask

    if is_cv_dir(args.checkpoint):  # a scorelib-cv dir: the fold ensemble, with the options of the CV run
        if args.data is None:
            raise OptionError(f"{args.checkpoint}: a cross-validation dir was trained on every row of its data; "
                              f"name a held-out table: scorelib-eval {args.checkpoint} --split test DATA")
        ckpt, source = Path(args.checkpoint) / "ensemble", args.checkpoint  # results: result-ensemble-{split}
        cfg = options.complete_cfg((read_cv_info(args.checkpoint) or {"args": {}})["args"])
    else:
        source = ckpt = resolve_checkpoint(args.checkpoint)
        cfg = checkpoint_utils.load_checkpoint(ckpt)["cfg"]
    scorer = load(source, device="cpu" if args.cpu else None)
    args = eval_options(args, parser, cfg, scorer.traits)
    check_window(args.max_length, scorer.models[0].encoder.config, source)
    results_path = results_dir(args.results_path, ckpt.parent)
    out = {}
    for split in args.split or ["valid", "test"]:
        task = TextScoringTask.setup_eval_task(args, scorer.tokenizer, scorer.table, split)
        ds = task.load_dataset(split)
        check_inputs_kept([args.data or "", *task.frames[split]["_file"].unique()],
                          [(results_path, RESULT_FILES)], f"--results-path {results_path}")
        results_path.mkdir(parents=True, exist_ok=True)
        # two evaluations into one results folder would mix their files; a training run does not hold it (its lock
        # is on the save dir), so a checkpoint can be evaluated while its run goes on
        with locks.folder_lock(results_path, f"--results-path {results_path}"):
            metrics = write_scorer_results(scorer, ds, args.bf16, results_path, ckpt.name, split)  # --stack: parts
            print(f"{ckpt.name} on {split}: {summary_line(metrics)}")
            for w in warnings_of(metrics):
                print(f"  warning: {w}")
            out[split] = metrics
            if args.report:
                write_report(args, source, ckpt, split, results_path)
    return out


def write_report(args, source, ckpt, split, results_path) -> None:
    """``scorelib-eval --report``: :func:`scorelib.report.builder.make_report` on the result file just written."""
    from scorelib.report.builder import make_report

    if ckpt.name not in ("checkpoint_best.pt", "ensemble"):
        raise OptionError(f"--report reads checkpoint_best's result files; {ckpt.name} is another checkpoint: "
                          f"evaluate the save dir itself, or run scorelib-report on it")
    names = {flag: [c.strip() for c in value.split(",") if c.strip()] if value else []
             for flag, value in (("group", args.group_column), ("second", args.second_score_column))}
    done = make_report(Path(source).parent if Path(source).is_file() else source, args.data, split=split,
                       group_columns=names["group"], second_score_columns=names["second"],
                       key_column=args.key_column or "key", bootstrap=args.bootstrap, seed=args.seed,
                       results_path=results_path, min_n_per_group=args.min_n_per_group)
    print(f"report: {done['html']} ({len(done['report']['flags'])} flag(s))")
    for w in done["report"]["warnings"]:
        print(f"  warning [{w['trait']}, {w['scope']}] {w['en']}")


