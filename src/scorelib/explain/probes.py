"""``scorelib-probe DIR DATA``: rescore a split's texts after perturbations that should not help them.

No fairseq counterpart; the result files follow ``scorelib-eval``'s (``results/probe-{ckpt}-{split}``
.csv/.json/.png). Every text of the split is perturbed once per probe (:mod:`scorelib.explain.perturb`)
and rescored with ``scorer.score``; per probe and per prompt (and trait) the JSON gives the mean
change and the share of texts whose score rises by at least half a score step (0.05 of the range
without a step). A probe that should lower scores (shuffled, repeated, off-topic, halved, random
words) but raises the mean (by more than 1% of the prompts' ranges: less is noise) is flagged, in the log
and in the JSON.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib import checkpoint_utils
from scorelib.data.readers import read_table
from scorelib.data.tables import Columns, read_splits
from scorelib.errors import MissingFileError, OptionError, ScorelibError
from scorelib.explain.perturb import NEUTRAL_PARAGRAPH, PROBES, SHOULD_LOWER, perturb, vocabulary_of
from scorelib.writers import atomic_write, write_json, write_table

logger = logging.getLogger(__name__)
FLAG_TOLERANCE = 0.01  # a mean rise above this share of the prompts' ranges is flagged; below it is noise


def parse_probes(spec: str) -> list[str]:
    """``all`` or a comma list of probe names, refused with the known names otherwise."""
    names = list(PROBES) if spec.strip() == "all" else [p.strip() for p in spec.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROBES]
    if unknown or not names:
        raise OptionError(f"--probes {spec!r}: unknown {', '.join(unknown) or '(none given)'}; choose all or some of "
                          f"{', '.join(PROBES)}")
    return names


def training_cfg(save_dir) -> tuple[dict, bool]:
    """The training run's options of a save dir, a checkpoint file or a CV dir (``cv.json``); and whether a CV dir."""
    from scorelib.hub.ensemble import is_cv_dir
    from scorelib.hub.scorer import resolve_checkpoint
    from scorelib.options import complete_cfg

    if is_cv_dir(save_dir):
        return complete_cfg(json.loads((Path(save_dir) / "cv.json").read_text(encoding="utf-8"))["args"]), True
    return checkpoint_utils.load_checkpoint(resolve_checkpoint(save_dir))["cfg"], False


def trained_columns(cfg: dict, score=None) -> Columns:
    """The column names the training run read (``--key-column`` ... of its ``cfg``)."""
    return Columns(cfg.get("key_column"), cfg.get("prompt_column"), cfg.get("text_column"), cfg.get("context_column"),
                   score or cfg.get("score_column"))


def training_tables(cfg: dict):
    """The training run's tables, split as it split them (``None`` where its data is no longer there)."""
    if cfg.get("data") is not None and not Path(cfg["data"]).exists():
        return None
    return read_splits(cfg.get("data"), trained_columns(cfg), layout=cfg.get("layout") or "table",
                       encoding=cfg.get("encoding"), valid_fraction=cfg.get("valid_fraction", 0.1),
                       test_fraction=cfg.get("test_fraction", 0.1), split_seed=cfg.get("split_seed", 1),
                       keep_prompts=cfg.get("prompts"), sheet=cfg.get("sheet"))


def training_vocabulary(save_dir, fallback_texts, tables=None) -> tuple[list[str], str]:
    """Words for ``random-words``: the save dir's training table if it can be found, else ``fallback_texts``.

    Looks in ``DIR/data/train.csv`` (a ``scorelib-cv`` fold keeps one), then at ``tables`` (the training run's,
    :func:`training_tables`) or the data the checkpoint was trained on. Returns ``(words, where from)``.
    """
    from scorelib.hub.ensemble import is_cv_dir

    d = Path(save_dir)
    d = d / "fold0" if is_cv_dir(d) else d if d.is_dir() else d.parent
    if (d / "data" / "train.csv").is_file():
        return vocabulary_of(read_table(d / "data" / "train.csv")["text"]), str(d / "data" / "train.csv")
    try:
        cfg = training_cfg(d)[0]
        tables = tables or training_tables(cfg)
        if tables is not None:
            where = "the demo data's train split" if cfg.get("data") is None else f"{cfg['data']} (train split)"
            return vocabulary_of(tables.frames["train"]["text"]), where
    except (ScorelibError, KeyError, OSError) as e:
        logger.info("probe: the training table could not be read (%s)", e)
    return vocabulary_of(fallback_texts), "the probed split's own texts (the training table was not found)"


def _same_data(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return Path(a).resolve() == Path(b).resolve()


def rows_to_probe(args, cfg: dict, cv: bool, traits=()) -> tuple[pd.DataFrame, str, object]:
    """The rows ``scorelib-probe`` perturbs: the split ``--split`` of DATA, read with the training run's columns.

    Without DATA, the data the model was trained on (the demo data only for a model trained on it). DATA that is the
    training data is split as the training run split it, so that ``--split test`` is its held-out rows; another
    table is read whole as ``--split``, with the columns the training run named where it has them, and rows whose
    (prompt, text) were in the training split are left out with a warning. A column flag always wins.

    Returns:
        tuple: ``(frame, what was probed (for the log and JSON), the training run's tables or None)``.
    """
    trained = cfg.get("data")
    data = args.data if args.data is not None else trained
    if data is not None and not Path(data).exists():
        raise MissingFileError(f"{data}: not found" + ("" if args.data is not None else
                               f" ({args.save_dir} was trained on it); name the data to probe: "
                               f"scorelib-probe {args.save_dir} DATA"))
    same = _same_data(data, trained)
    sheet = getattr(args, "sheet", None) or (cfg.get("sheet") if same or data is None else None)  # --sheet wins
    if same and cv:
        raise OptionError(f"{args.save_dir}: a cross-validation dir's folds were trained on every row of "
                          f"{data or 'the demo data'}; name a held-out table: scorelib-probe {args.save_dir} DATA")
    given = {n: getattr(args, f"{n}_column") for n in ("key", "prompt", "text", "context", "score")}
    default = trained_columns(cfg, ",".join(traits) or None)
    if not same and data is not None and Path(data).is_file():  # the training run's names, where this table has them
        header = read_table(data, args.encoding or cfg.get("encoding"), sheet=sheet).columns
        default = Columns(*(getattr(default, n) if getattr(default, n) in header else None
                            for n in ("key", "prompt", "text", "context", "score")))
    columns = Columns(*(given[n] or getattr(default, n) for n in ("key", "prompt", "text", "context", "score")))
    label = "the demo data" if data is None else str(data)
    if same:
        tables = read_splits(data, columns, layout=cfg.get("layout") or "table", encoding=cfg.get("encoding"),
                             valid_fraction=cfg.get("valid_fraction", 0.1), test_fraction=cfg.get("test_fraction", 0.1),
                             split_seed=cfg.get("split_seed", 1), keep_prompts=cfg.get("prompts"), sheet=sheet)
        what = f"{label}, {args.split} split as the training run split it"
        if args.split == "train":
            logger.warning("probe: --split train: the model TRAINED on these rows; a probe of them says how it "
                           "treats texts it has seen, not new ones")
            what += " (rows the model trained on)"
    else:
        tables = read_splits(data, columns, layout=args.layout, encoding=args.encoding, whole_file_as=args.split,
                             sheet=sheet)
        what = f"{label}, {args.split}"
    if args.split not in tables.frames:
        raise OptionError(f"--split {args.split}: {label} has only {', '.join(tables.frames)}"
                          + (" (as the training run split it)" if same else ""))
    frame = tables.frames[args.split]
    train_tables = tables if same else training_tables(cfg)
    if not same and train_tables is not None:  # a CV dir's folds trained on every row of its data
        trained_rows = pd.concat(list(train_tables.frames.values()) if cv else [train_tables.frames["train"]])
        seen = set(zip(trained_rows["prompt"].astype(str), trained_rows["text"]))
        was = np.array([(str(p), t) in seen for p, t in zip(frame["prompt"], frame["text"])], dtype=bool)
        if was.any():
            logger.warning("probe: %d of %d rows of %s were in the model's training split (same prompt and text); "
                           "left out: a probe of texts the model trained on says little", int(was.sum()), len(frame),
                           label)
            frame = frame[~was]
            what += f", less {int(was.sum())} rows the model trained on"
        if frame.empty:
            raise OptionError(f"{label}: every row was in the model's training split; probe a held-out table")
    return frame, what, train_tables


def offtopic_paragraphs(frame: pd.DataFrame) -> dict[str, str]:
    """Per prompt, a fixed text of the next prompt (sorted ids, cyclic); the built-in paragraph for one prompt."""
    ids = sorted(frame["prompt"].unique())
    if len(ids) < 2:
        return {p: NEUTRAL_PARAGRAPH for p in ids}
    first = frame.sort_values("key").groupby("prompt")["text"].first()
    return {p: first[ids[(i + 1) % len(ids)]] for i, p in enumerate(ids)}


def run_probes(scorer, frame: pd.DataFrame, probes: list[str], seed: int = 1, vocabulary=None) -> pd.DataFrame:
    """Perturb every row once per probe and rescore.

    Args:
        scorer (Scorer): from :func:`scorelib.load`.
        frame (pd.DataFrame): columns ``key, prompt, text, context`` and ``score`` (``score_{trait}`` per trait).
        probes (list[str]): names in :data:`scorelib.explain.perturb.PROBES`.
        seed (int): seeds every perturbation (with the probe's name and the row's key).
        vocabulary (list[str], optional): words for ``random-words`` (default: the frame's own).

    Returns:
        pd.DataFrame: one row per (key, probe): ``key, prompt, probe, gold, pred, pred_probe, delta, text_probe``
        (with traits, ``gold_{t}, pred_{t}, pred_probe_{t}, delta_{t}`` per trait).
    """
    columns = scorer.table.scores  # one score: gold, pred, ...; traits: gold_{t}, pred_{t}, ...
    offtopic = offtopic_paragraphs(frame)
    vocabulary = vocabulary or vocabulary_of(frame["text"])
    parts = []
    for prompt, rows in frame.groupby("prompt", sort=True):
        has_ctx = "context" in rows and rows["context"].notna().all()
        ctx = rows["context"].astype(str).tolist() if has_ctx else None
        prompt_text = rows["context"].iloc[0] if has_ctx else scorer.table.contexts.get(str(prompt))
        material = {"prompt_text": prompt_text, "offtopic": offtopic[prompt], "vocabulary": vocabulary}
        pred = np.reshape(scorer.score(rows["text"].tolist(), prompt=str(prompt), contexts=ctx), (len(rows), -1))
        for name in probes:
            texts = [perturb(name, t, k, seed, material) for t, k in zip(rows["text"], rows["key"])]
            keep = [i for i, t in enumerate(texts) if t is not None]
            if not keep:
                logger.info("probe %s: prompt %s has no prompt text to insert; skipped", name, prompt)
                continue
            sub_ctx = None if ctx is None else [ctx[i] for i in keep]
            after = np.reshape(scorer.score([texts[i] for i in keep], prompt=str(prompt), contexts=sub_ctx),
                               (len(keep), -1))
            part = pd.DataFrame({"key": rows["key"].iloc[keep].to_numpy(), "prompt": str(prompt), "probe": name})
            gold = columns.matrix(rows)[keep]
            for k, name in enumerate(zip(*(columns.suffixed(c) for c in ("gold", "pred", "pred_probe", "delta")))):
                part[name[0]], part[name[1]] = gold[:, k], pred[keep, k]
                part[name[2]], part[name[3]] = after[:, k], after[:, k] - pred[keep, k]
            part["text_probe"] = [texts[i] for i in keep]
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def summarize(scorer, rows: pd.DataFrame) -> dict:
    """Per probe: the mean delta and the share rising per prompt and overall, per name (trait or score), and flags.

    A rise counts when ``delta >= step / 2`` (the trait's step; without one, 0.05 of the prompt's range). A probe
    of :data:`scorelib.explain.perturb.SHOULD_LOWER` is flagged for a name when its mean change, as a share of each row's
    prompt range, exceeds :data:`FLAG_TOLERANCE`.
    """
    out, flags = {}, []
    for probe, group in rows.groupby("probe", sort=False):
        entry = {"should_lower": probe in SHOULD_LOWER, "n": len(group), "overall": {}, "per_prompt": {}}
        for n, column in zip(scorer.table.views, scorer.table.scores.suffixed("delta")):
            table = scorer.table.views[n]
            delta = group[column].to_numpy()
            lo, hi = np.array([table.ranges[p] for p in group["prompt"]]).T
            rise = delta >= (table.step / 2 if table.step else 0.05 * (hi - lo))
            entry["overall"][n] = {"mean_delta": float(delta.mean()), "share_rising": float(rise.mean())}
            for p in sorted(group["prompt"].unique()):
                m = (group["prompt"] == p).to_numpy()
                entry["per_prompt"].setdefault(p, {})[n] = {"n": int(m.sum()), "mean_delta": float(delta[m].mean()),
                                                            "share_rising": float(rise[m].mean())}
            if probe in SHOULD_LOWER and np.mean(delta / (hi - lo)) > FLAG_TOLERANCE:
                flags.append({"probe": probe, "name": n, "mean_delta": float(delta.mean())})
        entry["flagged"] = [f["name"] for f in flags if f["probe"] == probe]
        out[probe] = entry
    return {"probes": out, "flags": flags}


def plot_summary(summary: dict, title: str):
    """Bars of each probe's mean change per name; flagged bars hatched."""
    import matplotlib.pyplot as plt

    probes = list(summary["probes"])
    names = list(next(iter(summary["probes"].values()))["overall"]) if probes else []
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(probes) * max(1, len(names) / 2)))
    height = 0.8 / max(1, len(names))
    for k, n in enumerate(names):
        values = [summary["probes"][p]["overall"][n]["mean_delta"] for p in probes]
        bars = ax.barh(np.arange(len(probes)) + k * height, values, height=height, label=n)
        for bar, p in zip(bars, probes):
            bar.set_hatch("//" if n in summary["probes"][p]["flagged"] else "")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(np.arange(len(probes)) + height * (len(names) - 1) / 2, probes)
    ax.invert_yaxis()
    ax.set(xlabel="mean change of the score (hatched: should lower it but raises it)", title=title)
    if len(names) > 1:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def probe_dir(args) -> dict:
    """``scorelib-probe``: read the split, probe, write ``probe-{ckpt}-{split}.csv/.json/.png``; returns the summary."""
    from scorelib.hub.scorer import load, resolve_checkpoint
    from scorelib.writers import results_dir

    probes = parse_probes(args.probes)
    scorer = load(args.save_dir, device="cpu" if args.cpu else None)
    cfg, cv = training_cfg(args.save_dir)
    ckpt = Path(args.save_dir) / "cv" if cv else resolve_checkpoint(args.save_dir)
    frame, what, train_tables = rows_to_probe(args, cfg, cv, scorer.table.traits)
    if args.max_rows and len(frame) > args.max_rows:
        frame = frame.sample(args.max_rows, random_state=args.seed).sort_index()
    vocabulary, where = training_vocabulary(args.save_dir, frame["text"], train_tables)
    logger.info("probe: %d texts of %s, %d probes; random-words draws from %s (%d words)", len(frame), what,
                len(probes), where, len(vocabulary))
    rows = run_probes(scorer, frame, probes, seed=args.seed, vocabulary=vocabulary)
    summary = {"checkpoint": ckpt.stem, "split": args.split, "data": what, "seed": args.seed, "n_texts": len(frame),
               "vocabulary": where, **summarize(scorer, rows)}
    for probe, entry in summary["probes"].items():
        logger.info("probe %-17s %s", probe, ", ".join(f"{n}: mean {v['mean_delta']:+.3f}, {v['share_rising']:.0%} rise"
                                                        for n, v in entry["overall"].items()))
    for flag in summary["flags"]:
        logger.warning("FLAG: %s should not raise %s, but its mean rises by %+.3f", flag["probe"], flag["name"],
                       flag["mean_delta"])
    out = results_dir(args.results_path, ckpt.parent) / f"probe-{ckpt.stem}-{args.split}"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(rows, out.with_suffix(".csv"))
    write_json(summary, out.with_suffix(".json"))
    import matplotlib.pyplot as plt

    fig = plot_summary(summary, f"{ckpt.stem} on {args.split}: probes")
    atomic_write(out.with_suffix(".png"), lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)  # written, not shown (a notebook shows the PNG)
    print(f"wrote {out}.csv, .json, .png; flags: {', '.join(f['probe'] for f in summary['flags']) or 'none'}")
    return summary


