"""Render bench/results.json as the figures section of bench/README.md (between the FIGURES markers).

    python bench/report.py          # rewrite the section in place
    python bench/report.py --print  # print it only
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

README = common.ROOT / "bench" / "README.md"
BEGIN, END = "<!-- FIGURES:BEGIN (written by bench/report.py) -->", "<!-- FIGURES:END -->"


def yes(flag) -> str:
    return "reached" if flag else "**not reached**"


def f(x, nd=1) -> str:
    return "n/a" if x is None else f"{x:,.{nd}f}"


def stale(entry: dict) -> list[str]:
    """A warning line for a result measured before the current method (``common.METHOD``)."""
    if entry.get("method") == common.METHOD:
        return []
    note = f" ({entry['note']})" if entry.get("note") else ""
    return [f"> **Stale:** measured with an older method{note}, not with the settings described under Method; "
            f"rerun `make bench` to replace it.", ""]


def machine_line(m: dict, threads=None) -> str:
    return (f"{m['cpu']}, {m['cores']} cores, {threads or m['torch_threads']} torch threads; torch {m['torch']}, transformers "
            f"{m['transformers']}, Python {m['python']}; {m['date']}")


def render(data: dict) -> str:
    out = []
    pd_ = data.get("padding")
    if pd_:
        out += [f"### Padding efficiency (scorelib `--max-tokens {pd_['max_tokens']} --batch-size {pd_['batch_size']}`, "
                f"max length {pd_['max_length']}; tokenization only)", "", *stale(pd_),
                "| texts | tokens (median / max) | truncated | batching | padding efficiency | batches | mean batch size | "
                "max padded tokens |", "|---|---|---:|---|---:|---:|---:|---:|"]
        for r in pd_["sets"].values():
            for how, b in r["batchings"].items():
                out.append(f"| {r['source']} | {r['tokens_median']:.0f} / {r['tokens_max']} | {r['truncated']} | {how} | "
                           f"{f(100 * b['padding_efficiency'])}% | {b['batches']} | {f(b['mean_batch_size'], 2)} | "
                           f"{b['max_padded_tokens']:,} |")
        out += ["", f"Padding efficiency = non-pad tokens / padded tokens over one epoch's batches; scorelib: "
                    f"`scorelib.data.scoring_dataset.epoch_batches`. Command: `{pd_['command'].strip()}`.", ""]
        for r in pd_["sets"].values():
            if r.get("best_possible"):
                out += [f"Best possible for {r['source']} (`best_padding`: any split of the sorted lengths under the "
                        f"same caps): " + ", ".join(f"{f(100 * v)}% in {k.replace('_', ' ')}"
                                                   for k, v in r["best_possible"].items() if v is not None) + ".", ""]
    t = data.get("train")
    if t:
        out += [f"### Training throughput ({t['texts']}; {t['tokens_total']:,} non-pad tokens, {t['epochs']} epoch(s), "
                f"{t['dtype']}, medians of {t['repeats']} "
                f"{'runs, order rotated each repeat' if t.get('method') == common.METHOD else 'alternating runs'})", "",
                *stale(t),
                "| config | samples/s | non-pad tokens/s | padding efficiency | mean / max batch size | optimizer | threads "
                "| peak RSS (MiB) | runs (tokens/s) |", "|---|---:|---:|---:|---:|---|---:|---:|---|"]
        for cfg in ("scorelib", "scorelib_compile", "hf_default", "hf_group_by_length"):
            if cfg in t:
                r = t[cfg]
                out.append(f"| {cfg} | {f(r['samples_per_s'], 2)} | {f(r['tokens_per_s'])} | "
                           f"{f(100 * r['padding_efficiency'])}% | {f(r['mean_batch_size'], 2)} / "
                           f"{r.get('max_batch_size', 'n/a')} | {', '.join(r.get('optimizer', ['n/a']))} | "
                           f"{', '.join(map(str, r.get('threads', ['n/a'])))} | {f(r['peak_rss_mb'], 0)} | "
                           f"{', '.join(f(x) for x in r['tokens_per_s_runs'])} |")
        if t.get("runs"):
            order = [", ".join(r["config"] for r in t["runs"] if r["repeat"] == k)
                     for k in sorted({r["repeat"] for r in t["runs"]})]
            out += ["", "Run order: " + "; ".join(f"repeat {i + 1}: {o}" for i, o in enumerate(order)) + "."]
        if "ratio_vs_hf_default" in t:
            how = (f"`--batch-size {t['scorelib_batch_size']} --max-tokens {t['scorelib_max_tokens']}` (the "
                   f"smallest multiple of 64 at which the mean batch size is within 10% of HF's 16)"
                   if "scorelib_batch_size" in t else f"`--max-tokens {t['scorelib_max_tokens']}` with no row cap")
            out += ["", f"scorelib {how}. scorelib / HF default: **{t['ratio_vs_hf_default']:.2f}x** (goal >= 2.3x: "
                        f"{yes(t['goal_ratio_vs_hf_default_ge_2_3'])}); scorelib / HF group_by_length: "
                        f"**{t['ratio_vs_hf_group_by_length']:.2f}x** (goal >= 1.5x: "
                        f"{yes(t['goal_ratio_vs_hf_group_by_length_ge_1.5'])}); padding efficiency goal >= 90%: "
                        f"{yes(t['goal_padding_efficiency_ge_0.9'])}."]
        c = t.get("scorelib_compile")
        if c and "ratio_compile_vs_eager" in t:
            if c.get("compiled"):
                how = (f"compiled in {f(c['compile_s'])} s (median; runs {', '.join(f(x) for x in c['compile_s_runs'])} "
                       f"s), outside the timed epoch: {t.get('compile_timing', '')}")
                if c.get("graphs_during_timed_epochs"):
                    how += f"; **{c['graphs_during_timed_epochs']} graph(s) were recompiled inside the timed epoch**"
            else:
                how = "**torch.compile was not available: the run fell back to eager**"
            out += ["", f"`--compile` (torch.compile of the encoder, dynamic shapes) / eager scorelib: "
                        f"**{t['ratio_compile_vs_eager']:.2f}x** non-pad tokens/s; {how}."]
        o = t.get("overhead")
        if o:
            out += ["", f"Distance to the limit: scorelib epoch {f(o['scorelib_epoch_s'], 2)} s vs a bare forward + "
                        f"backward + AdamW loop on pre-built tensors of the same batches {f(o['bare_epoch_s'], 2)} s "
                        f"({f(o['scorelib_tokens_per_s'])} vs {f(o['bare_tokens_per_s'])} tokens/s): overhead "
                        f"**{o['overhead_pct']:+.1f}%** (goal < 10%: {yes(o['goal_overhead_lt_10pct'])})."]
        used = t.get("threads_used")
        out += ["", f"Machine: {machine_line(t['machine'], t.get('threads', t.get('threads_requested')))}"
                    f"{f'; torch threads used by the children: {used}' if used else ''}. 1-minute load average during the runs: "
                    f"{', '.join(map(str, t['loadavg_1m_during']))}. Command: `{t['command'].strip()}`", ""]
    out += render_compile(data.get("compile"))
    s = data.get("score")
    if s:
        a, b = s["single"], s["batch"]
        out += ["### Scoring", "", *stale(s),
                "| case | scorer | bare forward | scorer / bare |", "|---|---:|---:|---:|",
                f"| one short text ({a['tokens']} tokens), p50 ms over {a['calls']} calls | {f(a['scorer_p50_ms'], 2)} | "
                f"{f(a['bare_p50_ms'], 2)} | {a['scorer_p50_ms'] / a['bare_p50_ms']:.3f} |",
                f"| same, p95 ms | {f(a['scorer_p95_ms'], 2)} | {f(a['bare_p95_ms'], 2)} | "
                f"{a['scorer_p95_ms'] / a['bare_p95_ms']:.3f} |",
                f"| {b['texts']}, texts/s (median of {len(b['scorer_s_runs'])}) | {f(b['scorer_texts_per_s'])} | "
                f"{f(b['bare_texts_per_s'])} | {b['ratio_throughput_scorer_vs_bare']:.3f} |", "",
                f"Single-text overhead at p50: **{a['overhead_p50_pct']:+.1f}%** (goal < 20%: "
                f"{yes(a['goal_overhead_p50_lt_20pct'])}); batch throughput **{100 * b['ratio_throughput_scorer_vs_bare']:.1f}%** "
                f"of bare (goal >= 90%: {yes(b['goal_ratio_ge_0.9'])}).", "",
                f"Machine: {machine_line(s['machine'], s.get('threads'))}. Load during the runs: "
                f"{', '.join(map(str, s['loadavg_1m_during']))}. Command: `{s['command'].strip()}`", ""]
    for name, goal, key in [(n, g, f"quality_{n}{suffix}") for n, g in (("mohler_sag", "Pearson >= 0.70, RMSE <= 0.80"),
                            ("clear_readability", "RMSE <= 0.55")) for suffix in ("", "_stack")]:
        q = data.get(key)
        if not q:
            continue
        if key.endswith("_stack"):
            name = f"{name} with `--stack tfidf`"
        o, base = q["scorelib"], q["tfidf_ridge"]
        if o is None:
            out += [f"### Quality: {name}", "", f"Split: {q['split']}.", "",
                    f"TF-IDF + ridge: test Pearson {base['pearson']:.3f}, RMSE {base['rmse']:.3f}.", "",
                    f"scorelib: **not measured**. {q.get('note', '')}", ""]
            continue
        goals = ", ".join(f"{k[5:]}: {yes(v)}" for k, v in q.items() if k.startswith("goal_"))
        if "best_epoch" in o:
            ours = (f"scorelib (checkpoint_best = epoch {o['best_epoch']} of a {o['epoch_budget']}-epoch budget, "
                    f"picked on {o['picked_on'].split(' (')[0]})")
        else:
            ours = f"scorelib (checkpoint_best, {o['epochs']} epochs)"
        if o.get("parts"):  # --stack: the row is the blend; its parts follow
            ours += f", blended with its TF-IDF stack (weight on the encoder {fmt_weight(o)}, fitted on valid)"
        if "alpha" in base:
            theirs = f"TF-IDF + ridge ({base['inputs']}; alpha {base['alpha']:g} picked on {base['alpha_picked_on']}, fit on {base['fit_on']})"
        else:
            theirs = "TF-IDF + ridge"
        curve = o.get("valid_curve")
        out += [f"### Quality: {name}", "", *stale(q), f"Split: {q['split']}.", "",
                "| model | test Pearson | test RMSE | wall time |", "|---|---:|---:|---:|",
                f"| {ours} | {o['pearson']:.3f} | {o['rmse']:.3f} | {o['wall_s'] / 60:.1f} min |",
                *[f"| its {part} alone | {v['pearson']:.3f} | "
                  f"{v['rmse']:.3f} | |" for part, v in o.get("parts", {}).items()],
                f"| {theirs} | {base['pearson']:.3f} | {base['rmse']:.3f} | |", ""]
        if curve:
            out += [f"Valid curve ({o['picked_on'].split(' (')[0]} per epoch): "
                    f"{', '.join(f'{e}: {v:.3f}' for e, v in curve.items())}.", ""]
        run_by = f" (run by `{q['bench_command'].strip()}`)" if q.get("bench_command") else ""
        out += [f"Goal ({goal}): {goals}. Command: `{o['command']}`{run_by}. Machine: "
                f"{machine_line(q['machine'], o.get('torch_threads'))}.", ""]
    for name in ("mohler_sag", "clear_readability", "demo"):
        out += render_cv(name, data.get(f"cv_{name}"))
        out += render_cv(f"{name} with `--stack tfidf`", data.get(f"cv_{name}_stack"))
    out += render_long(data.get("long_text"))
    out += render_recipe(data.get("recipe"))
    q = data.get("time_to_quality")
    if q:
        out += ["### Time to quality: mohler_sag (valid Pearson; training + per-epoch validation)", "", *stale(q),
                f"Split: {q['split']}. Grid: lr {', '.join(f'{x:g}' for x in q['lrs'])}, a {q['epochs']}-epoch schedule "
                f"each, valid after every epoch. Target: valid Pearson **{q['target_valid_pearson']:.3f}** "
                f"({q['target_is']}).", "",
                "| side | time to target | lr, epoch | valid Pearson there | best valid Pearson | threads |",
                "|---|---:|---|---:|---:|---:|"]
        for side, label in (("scorelib", "scorelib (defaults)"),
                            ("hf", "transformers.Trainer (group_by_length, fused AdamW)")):
            r = q[side]
            got = r["reached"]
            where = f"{got['lr']:g}, epoch {got['epoch']}" if got else ""
            out.append(f"| {label} | {f(r['time_to_target_s'] / 60, 1) + ' min' if got else 'not reached'} | "
                       f"{where} | "
                       f"{f(got['valid_pearson'], 3) if got else ''} | {f(q['best_valid_pearson'][side], 3)} | "
                       f"{', '.join(map(str, r['threads']))} |")
        ratio = q.get("ratio_scorelib_vs_hf")
        goal = next((k for k in q if k.startswith("goal_ratio_le_")), "goal_ratio_le_0.5")
        out += ["", f"scorelib / HF time to target: **{'n/a' if ratio is None else f'{ratio:.2f}'}** (goal <= "
                    f"{goal.rsplit('_', 1)[1]}: {yes(q.get(goal))})."]
        for side in ("scorelib", "hf"):
            curves = "; ".join(f"lr {lr}: " + ", ".join(f"{e['valid_pearson']:.3f} @ {e['cumulative_s'] / 60:.1f} min"
                                                        for e in c) for lr, c in q[side]["curves"].items())
            out += ["", f"{side} valid Pearson @ cumulative time per epoch: {curves}."]
        out += ["", f"Machine: {machine_line(q['machine'])}. 1-minute load after each run: "
                    f"{', '.join(map(str, q['loadavg_1m_runs']))}. Command: `{q['command'].strip()}`", ""]
    return "\n".join(out).rstrip() + "\n"


def render_compile(c: dict | None) -> list[str]:
    """Where a training step's time goes (bench_compile.py): eager vs --compile, with and without dropout."""
    if not c:
        return []
    out = [f"### Training step: eager vs `--compile`, with and without dropout ({c['texts']}; epoch 1's first "
           f"{c['batches']} batches, `--max-tokens {c['max_tokens']} --batch-size {c['batch_size']}`)", "", *stale(c),
           "| variant | flags | non-pad tokens/s | padded tokens/s | timed passes (s) | first pass (s) | graphs in timed "
           "passes |", "|---|---|---:|---:|---|---:|---:|"]
    for name, r in c["variants"].items():
        out.append(f"| {name} | `{' '.join(r['flags']) or '(defaults)'}` | {f(r['tokens_per_s'])} | "
                   f"{f(r['padded_tokens_per_s'])} | {', '.join(f(x, 2) for x in r['pass_s'])} | "
                   f"{f(r['first_pass_s'], 1)} | {r['graphs_in_timed_passes']} |")
    out += ["", "Ratios (non-pad tokens/s): " + ", ".join(f"{k.replace('_vs_', ' / ')} **{v:.2f}x**"
                                                        for k, v in c["ratios"].items()) + ".", "",
            f"Fastest of {c['passes']} timed passes after an untimed one (which compiles). 1-minute load: mean "
            f"{c['load_1m']['mean']}, max {c['load_1m']['max']}. Command: `{c['command'].strip()}`. Machine: "
            f"{machine_line(c['machine'], c['threads'])}.", ""]
    return out


def render_long(r: dict | None) -> list[str]:
    """Long essays and six traits (bench_long.py): test RMSE per trait and MCRMSE for each --long-text mode."""
    if not r or r.get("quick"):
        return []
    traits = r["traits"]
    out = [f"### Long essays, six traits: feedback_prize_ell (`--long-text`, test split of {r['rows']['test']} essays)",
           "", *stale(r), f"Split (seed {r['split_seed']}): {r['rows']}.", "",
           "| model | epochs | MCRMSE | " + " | ".join(traits) + " | wall time | train tokens/s | 1-min load (mean / max) |",
           "|---|---:|---:|" + "---:|" * len(traits) + "---:|---:|---:|"]
    for name, label in (("train_mean", "training mean"), ("tfidf_ridge", "TF-IDF + ridge (alpha on valid)")):
        b = r[name]
        out.append(f"| {label} | | {b['mcrmse']:.3f} | " + " | ".join(f"{b['rmse'][t]:.3f}" for t in traits)
                   + f" | {b['wall_s']:.0f} s | | |")
    for mode, m in r["modes"].items():
        load = m.get("loadavg_1m") or {}
        out.append(f"| scorelib `{mode}` | {m.get('epochs', '')} | **{m['mcrmse']:.3f}** | " + " | ".join(f"{m['rmse'][t]:.3f}" for t in traits)
                   + f" | {m['wall_s'] / 60:.1f} min | {m['tokens_per_s']:,.0f} | "
                   f"{load.get('mean', 'n/a')} / {load.get('max', 'n/a')} |")
    for mode, m in r["modes"].items():
        for part, v in m.get("parts", {}).items():
            out.append(f"| `{mode}`: its {part} alone (encoder weight {fmt_weight(m)}) | | {v['mcrmse']:.3f} | "
                       + " | ".join(f"{v['rmse'][t]:.3f}" for t in traits) + " | | | |")
    out.append("")
    for mode, m in r["modes"].items():
        curve = ", ".join(f"epoch {e['epoch']}: {next(v for k, v in e.items() if k.startswith('valid_')):.3f} @ "
                          f"{e['train_seconds_so_far'] / 60:.1f} min" for e in m.get("valid_curve", []))
        out.append(f"* `{mode}` (`{' '.join(m.get('flags', r['flags']))}`): valid curve {curve}. {m.get('load_log', '')}")
    best = r.get("best_mode")
    if best:
        out += ["", f"Best: `{best['mode']}`, test MCRMSE {best['mcrmse']:.3f} in {best['wall_s'] / 60:.1f} min "
                    f"(goal {best['goal']}: {yes(best['goal_met'])})."]
    c = r.get("chunks_vs_truncate")
    if c:
        out += ["", f"Cost of `chunks` against `truncate`: {c['tokens_per_s_ratio']:.2f}x the tokens/s, "
                    f"{c['seconds_per_epoch_ratio']:.2f}x the seconds per epoch."]
    missing = [m for m in ("truncate", "head-tail", "chunks") if m not in r["modes"]]
    if missing:
        out += ["", f"Not measured yet: {', '.join(missing)} (`python bench/bench_long.py --modes "
                    f"{','.join(missing)}` adds them beside these)."]
    out += ["", f"Machine: {machine_line(r['machine'])}.", ""]
    return out


def fmt_weight(run: dict) -> str:
    """A stacked run's blend weights on the encoder, per score: '0.62' or 'cohesion 0.6, syntax 0.5, ...'."""
    w = run.get("blend_weight") or {}
    return ", ".join(f"{v:.2f}" if len(w) == 1 else f"{k} {v:.2f}" for k, v in w.items()) or "n/a"


def render_recipe(r: dict | None) -> list[str]:
    """The regression recipe study (bench_recipe.py): data set x setting -> valid figure, and the wins."""
    if not r or not r.get("runs"):
        return []
    from bench_recipe import table

    runs = r["runs"]
    loads = [x["loadavg_1m"].get("mean") for x in runs.values() if x.get("loadavg_1m")]
    sizes = {x["data_set"]: (x["budget_s"] / 60, x.get("train_rows")) for x in runs.values()}
    return ["### Regression recipe study (valid splits only; `bench/bench_recipe.py`)", "",
            "Each cell: checkpoint_best's valid figure after the epochs that the data set's wall-time budget allowed "
            "(the baseline's calibrated speed; `dropout0`, `recipe` and `head_lr_dropout0`, whose dropout 0 makes a step "
            "faster, calibrated their own and got more epochs, as a user with that budget would), then the epochs and "
            "the run's wall time. `head_lr_dropout0` is the second round: dropout 0 on top of the first round's winner, "
            "judged against `head_lr`, not the baseline; `head_lr_dropout0_cls` is the third: cls pooling (which beat "
            "the baseline on three sets) on top of the defaults the first two rounds set, judged against "
            "`head_lr_dropout0` and trained for its epochs (pooling does not change a step's cost). Budgets and train rows (smaller than `BUDGET_MINUTES` so that a setting fits a "
            "sitting): " + "; ".join(f"{n} {b:g} min, {t} rows" for n, (b, t) in sizes.items()) + ". "
            + ("" if "feedback_prize_ell" in sizes else "Feedback Prize ELL, the study's fourth data set, has not run "
               "(its budget is 45 minutes a setting). ")
            + "\"-> change the default\" is the study's rule (wins on valid on at least three of the four sets); "
            "README.md (\"Why these defaults\") says which defaults did change.", "",
            table(runs), "", f"1-minute load during the runs: {min(loads):.2f}-{max(loads):.2f} (mean of each run's "
            f"samples; runs that take another run's epochs give the same figure at any load, only their wall time "
            f"grows). Machine: {machine_line(next(iter(runs.values()))['machine'])}.", "",
            "Each figure is one seed; margins of a few thousandths are within what another seed would move. The "
            "study's first sitting was discarded in part and re-run: runs taken beside other work calibrated slower "
            "and got an epoch less (Mohler's 3-minute budget sits near the 3/4-epoch boundary), and runs started after "
            "`--head-lr`'s default changed in the working tree trained with it; hence `REFERENCE` (every run spells "
            "out the study's starting defaults) and the baseline's epochs for the settings that cost what it costs.", ""]


def render_cv(name: str, c: dict | None) -> list[str]:
    """The cross-validation section of one data set (bench_cv.py)."""
    if not c:
        return []
    o, t = c["scorelib"]["overall"], c["test"]

    def ms(d, m):
        return f"{d[m]['mean']:.3f} ± {d[m]['sd']:.3f}"

    blend = (f", blended with its TF-IDF stack (weight on the encoder {fmt_weight(c['scorelib'])}, fitted out of fold)"
             if c["scorelib"].get("pooled_parts") else "")
    out = [f"### Cross-validation: {name} ({c['folds']} folds, {c['epoch_budget']} epoch(s) per fold)", "", *stale(c),
           f"Split: {c['split']}.", "", "| model (out-of-fold) | Pearson mean ± sd | RMSE mean ± sd | pooled Pearson | "
           "pooled RMSE |" + (" QWK (cut-points) mean ± sd | QWK (nearest) mean ± sd |" if "qwk_nearest" in o else ""),
           "|---|---:|---:|---:|---:|" + ("---:|---:|" if "qwk_nearest" in o else ""),
           f"| scorelib{blend} | {ms(o, 'pearson')} | {ms(o, 'rmse')} | {o['pearson']['pooled']:.3f} | {o['rmse']['pooled']:.3f} |"
           + (f" {ms(o, 'qwk')} | {ms(o, 'qwk_nearest')} |" if "qwk_nearest" in o else "")]
    for part, v in c["scorelib"].get("pooled_parts", {}).items():
        out.append(f"| its {part} alone | | | {v['pearson']:.3f} | {v['rmse']:.3f} |" + (" | |" if "qwk_nearest" in o else ""))
    b = c.get("tfidf_ridge")
    if b:
        out.append(f"| TF-IDF + ridge (each fold's train; alpha on its valid) | {ms(b, 'pearson')} | {ms(b, 'rmse')} | "
                   f"{b['pooled']['pearson']:.3f} | {b['pooled']['rmse']:.3f} |")
    metrics = [k for k in ("pearson", "rmse", "qwk", "qwk_nearest") if k in t["ensemble"]]
    out += ["", f"Held-out test ({t['n']} rows no fold model saw):", "",
            "| model | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for fold in t["folds"]:
        out.append(f"| fold {fold['fold']} | " + " | ".join(f"{fold[m]:.3f}" for m in metrics) + " |")
    out.append("| **ensemble (mean of the folds)** | " + " | ".join(f"**{t['ensemble'][m]:.3f}**" for m in metrics) + " |")
    for part, m in t.get("ensemble_parts", {}).items():
        out.append(f"| ensemble: its {part} alone | " + " | ".join(f"{m[k]:.3f}" for k in metrics) + " |")
    gain = t["ensemble_gain_vs_fold_mean"]
    best = t["ensemble_gain_vs_best_fold"]
    out += ["", "Ensemble gain over the mean single fold model: " + ", ".join(f"{m} {gain[m]:+.3f}" for m in metrics)
            + "; over the best fold on each metric (chosen on test, so this flatters the single model): "
            + ", ".join(f"{m} {best[m]:+.3f} (fold {t['best_fold_on_test'][m]})" for m in metrics)
            + f". Median spread across folds: "
            f"{t['spread_median']:.3f}.", ""]
    walls = c.get("fold_wall_s") or {}
    if walls:
        out += ["Wall time per fold (training, per-epoch validation, prediction): "
                + ", ".join(f"fold {k}: {v / 60:.1f} min" for k, v in walls.items())
                + f"; total {c['wall_s'] / 60:.1f} min"
                + (f" ({c['fold_wall_note']})." if c.get("fold_wall_note") else
                   f". 1-minute load at the end: {c.get('loadavg_1m_end', 'n/a')}."), ""]
    out += [f"Command: `{c['command']}` (run by `{c['bench_command'].strip()}`). Machine: "
            f"{machine_line(c['machine'], c.get('torch_threads'))}.", ""]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--print", action="store_true")
    opts = p.parse_args(argv)
    data = json.loads(common.RESULTS.read_text()) if common.RESULTS.is_file() else {}
    section = render(data)
    if opts.print or not README.is_file():
        print(section)
        return 0
    text = README.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        README.write_text(f"{head}{BEGIN}\n{section}{END}{tail}")
    else:
        README.write_text(f"{text.rstrip()}\n\n{BEGIN}\n{section}{END}\n")
    print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
