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


def machine_line(m: dict, threads=None) -> str:
    return (f"{m['cpu']}, {m['cores']} cores, {threads or m['torch_threads']} torch threads; torch {m['torch']}, transformers "
            f"{m['transformers']}, Python {m['python']}; {m['date']}")


def render(data: dict) -> str:
    out = []
    t = data.get("train")
    if t:
        out += [f"### Training throughput ({t['texts']}; {t['tokens_total']:,} non-pad tokens, {t['epochs']} epoch(s), "
                f"{t['dtype']}, medians of {t['repeats']} alternating runs)", "",
                "| config | samples/s | non-pad tokens/s | padding efficiency | mean batch size | peak RSS (MiB) | runs (tokens/s) |",
                "|---|---:|---:|---:|---:|---:|---|"]
        for cfg in ("scorelib", "hf_default", "hf_group_by_length"):
            if cfg in t:
                r = t[cfg]
                out.append(f"| {cfg} | {f(r['samples_per_s'], 2)} | {f(r['tokens_per_s'])} | "
                           f"{f(100 * r['padding_efficiency'])}% | {f(r['mean_batch_size'], 2)} | {f(r['peak_rss_mb'], 0)} | "
                           f"{', '.join(f(x) for x in r['tokens_per_s_runs'])} |")
        if "ratio_vs_hf_default" in t:
            out += ["", f"scorelib `--max-tokens {t['scorelib_max_tokens']}` (chosen so that the mean batch size is "
                        f"within 10% of HF's 16). scorelib / HF default: **{t['ratio_vs_hf_default']:.2f}x** (goal >= 3x: "
                        f"{yes(t['goal_ratio_vs_hf_default_ge_3'])}); scorelib / HF group_by_length: "
                        f"**{t['ratio_vs_hf_group_by_length']:.2f}x** (goal >= 1.5x: "
                        f"{yes(t['goal_ratio_vs_hf_group_by_length_ge_1.5'])}); padding efficiency goal >= 90%: "
                        f"{yes(t['goal_padding_efficiency_ge_0.9'])}."]
        o = t.get("overhead")
        if o:
            out += ["", f"Distance to the limit: scorelib epoch {f(o['scorelib_epoch_s'], 2)} s vs a bare forward + "
                        f"backward + AdamW loop on pre-built tensors of the same batches {f(o['bare_epoch_s'], 2)} s "
                        f"({f(o['scorelib_tokens_per_s'])} vs {f(o['bare_tokens_per_s'])} tokens/s): overhead "
                        f"**{o['overhead_pct']:+.1f}%** (goal < 10%: {yes(o['goal_overhead_lt_10pct'])})."]
        out += ["", f"Machine: {machine_line(t['machine'], t.get('threads'))}. 1-minute load average during the runs: "
                    f"{', '.join(map(str, t['loadavg_1m_during']))}. Command: `{t['command']}`", ""]
    s = data.get("score")
    if s:
        a, b = s["single"], s["batch"]
        out += ["### Scoring", "",
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
                f"{', '.join(map(str, s['loadavg_1m_during']))}. Command: `{s['command']}`", ""]
    for name, goal in (("mohler_sag", "Pearson >= 0.70, RMSE <= 0.80"), ("clear_readability", "RMSE <= 0.55")):
        q = data.get(f"quality_{name}")
        if not q:
            continue
        o, base = q["scorelib"], q["tfidf_ridge"]
        if o is None:
            out += [f"### Quality: {name}", "", f"Split: {q['split']}.", "",
                    f"TF-IDF + ridge: test Pearson {base['pearson']:.3f}, RMSE {base['rmse']:.3f}.", "",
                    f"scorelib: **not measured**. {q.get('note', '')}", ""]
            continue
        goals = ", ".join(f"{k[5:]}: {yes(v)}" for k, v in q.items() if k.startswith("goal_"))
        out += [f"### Quality: {name}", "", f"Split: {q['split']}.", "",
                "| model | test Pearson | test RMSE | wall time |", "|---|---:|---:|---:|",
                f"| scorelib (checkpoint_best, {o['epochs']} epochs) | {o['pearson']:.3f} | {o['rmse']:.3f} | "
                f"{o['wall_s'] / 60:.1f} min |",
                f"| TF-IDF + ridge | {base['pearson']:.3f} | {base['rmse']:.3f} | |", "",
                f"Goal ({goal}): {goals}. Command: `{o['command']}`. Machine: {machine_line(q['machine'])}.", ""]
    return "\n".join(out).rstrip() + "\n"


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
