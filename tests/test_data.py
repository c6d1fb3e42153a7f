"""Tests for table reading, the task's data setup, ``ScoringDataset`` and ``batch_by_size`` (scorelib.data.readers, tables, dataset, tasks)."""

import numpy as np
import pandas as pd
import pytest
import torch

from scorelib.data.scoring_dataset import batch_by_size, padding_efficiency
from scorelib.errors import DataError
from scorelib.data.readers import read_table
from scorelib.options import parse_args
from scorelib.tasks.text_scoring import TextScoringTask


def setup(tokenizer, *argv):
    return TextScoringTask.setup_task(parse_args([str(a) for a in argv]), tokenizer=tokenizer)


def write_csv(path, rows, columns=("key", "prompt", "text", "score"), sep=",", encoding="utf-8"):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False, sep=sep, encoding=encoding)
    return path


def rows_for(prompts, n, lo=0, hi=3):
    return [(f"{p}-{i}", p, f"answer {i} to {p} " + "word " * (i % 5), lo + i % (hi - lo + 1))
            for p in prompts for i in range(n)]


def all_keys(task):
    return sorted(k for f in task.frames.values() for k in f["key"])


# ---------------------------------------------------------------- readers
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx"])
def test_readers_keep_every_cell_as_written(tmp_path, suffix):
    frame = pd.DataFrame({"key": ["007", "a"], "prompt": ["11.10", "11.1"], "text": ["NA", "x, y; z"],
                          "score": ["1.50", "2"]})
    path = tmp_path / f"t{suffix}"
    if suffix == ".xlsx":
        frame.to_excel(path, index=False, engine="openpyxl")
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    got = read_table(path)
    assert got["key"].tolist() == ["007", "a"]
    assert got["prompt"].tolist() == ["11.10", "11.1"]
    assert got["text"].tolist() == ["NA", "x, y; z"]  # "NA" is not read as missing
    assert got["score"].tolist() == ["1.50", "2"]
    assert got["_row"].tolist() == [2, 3]


def test_prompt_ids_stay_strings(tmp_path, tokenizer):
    rows = rows_for(["11.10", "11.1", "007", "7"], 6)
    task = setup(tokenizer, write_csv(tmp_path / "all.csv", rows), "--valid-fraction", "0", "--test-fraction", "0")
    assert set(task.prompts.ids) == {"11.10", "11.1", "007", "7"}
    assert task.prompts.ids.index("7") < task.prompts.ids.index("11.1")  # natural order, still strings
    assert len(task.frames["train"]) == len(rows)


def test_bom_is_dropped_from_the_header(tmp_path, tokenizer):
    path = write_csv(tmp_path / "all.csv", rows_for(["a"], 10), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert list(read_table(path).columns)[0] == "key"
    task = setup(tokenizer, path)
    assert all_keys(task) == sorted(k for k, *_ in rows_for(["a"], 10))


def asap_aes(path, encoding="utf-8"):
    rows = [(i, s, f"Dear editor, essay {i} caf\u00e9 " * 3, 1, 2, lo + i % (hi - lo + 1))
            for s, (lo, hi) in ((1, (2, 12)), (2, (1, 6))) for i in range(s * 100, s * 100 + 10)]
    cols = ["essay_id", "essay_set", "essay", "rater1_domain1", "rater2_domain1", "domain1_score"]
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False, sep="\t", encoding=encoding)
    return rows


def test_asap_aes_layout_with_latin1_fallback(tmp_path, tokenizer, log_of):
    path = tmp_path / "training_set_rel3.tsv"
    rows = asap_aes(path, encoding="latin-1")
    with pytest.raises(DataError, match=r"training_set_rel3.tsv: line 2.*not valid UTF-8; pass --encoding"):
        setup(tokenizer, path, "--key-column", "essay_id", "--prompt-column", "essay_set", "--text-column",
              "essay", "--score-column", "domain1_score")
    task = setup(tokenizer, path, "--layout", "asap-aes")
    assert "reading it as latin-1" in log_of.text
    assert task.prompts.ids == ["1", "2"]
    assert task.prompts.ranges == {"1": (2.0, 12.0), "2": (1.0, 6.0)}  # built in, not inferred
    assert task.prompts.step == 1.0 and not task.prompts.uses_context
    assert all_keys(task) == sorted(str(r[0]) for r in rows)
    assert "caf\u00e9" in task.frames["train"]["text"].iloc[0]


def test_asap_sas_layout(tmp_path, tokenizer):
    rows = [(i, s, i % 3, 9, f"short answer {i}") for s in (1, 3) for i in range(s * 50, s * 50 + 10)]
    path = tmp_path / "train_rel_2.tsv"
    pd.DataFrame(rows, columns=["Id", "EssaySet", "Score1", "Score2", "EssayText"]).to_csv(path, sep="\t", index=False)
    task = setup(tokenizer, path, "--layout", "asap-sas")
    assert task.prompts.ranges == {"1": (0.0, 3.0), "3": (0.0, 2.0)}
    frame = pd.concat(task.frames.values()).set_index("key")
    assert len(frame) == len(rows)
    assert [frame.loc[str(r[0]), "score"] for r in rows] == [r[2] for r in rows]  # Score1, not Score2


# ---------------------------------------------------------------- ranges
def test_declared_and_inferred_ranges(tmp_path, tokenizer, log_of):
    path = write_csv(tmp_path / "all.csv", rows_for(["a", "b"], 10, lo=1, hi=3))
    inferred = setup(tokenizer, path)
    assert inferred.prompts.ranges == {"a": (1.0, 3.0), "b": (1.0, 3.0)}
    assert "prompt 'a': no declared range; using the training split's 1 .. 3" in log_of.text
    log_of.clear()
    one = setup(tokenizer, path, "--score-range", "0", "5")
    assert one.prompts.ranges == {"a": (0.0, 5.0), "b": (0.0, 5.0)}
    assert "no declared range" not in log_of.text
    write_csv(tmp_path / "ranges.csv", [("a", 0, 4)], columns=("prompt", "min", "max"))
    mixed = setup(tokenizer, path, "--score-ranges", tmp_path / "ranges.csv")
    assert mixed.prompts.ranges == {"a": (0.0, 4.0), "b": (1.0, 3.0)}
    assert "prompt 'b': no declared range" in log_of.text


def test_one_table_split_places_every_row_once(tmp_path, tokenizer):
    rows = rows_for(["a", "b", "c"], 20)
    path = write_csv(tmp_path / "all.csv", rows)
    task = setup(tokenizer, path, "--valid-fraction", "0.2", "--test-fraction", "0.1", "--max-train-rows", "1000")
    sizes = {s: len(f) for s, f in task.frames.items()}
    assert sizes == {"train": 42, "valid": 12, "test": 6}
    assert all_keys(task) == sorted(r[0] for r in rows)  # no row lost, none twice
    for frame in task.frames.values():
        assert set(frame["prompt"]) == {"a", "b", "c"}  # split per prompt
    again = setup(tokenizer, path, "--valid-fraction", "0.2", "--test-fraction", "0.1", "--max-train-rows", "1000")
    assert again.frames["valid"]["key"].tolist() == task.frames["valid"]["key"].tolist()  # seeded


def test_scaling_round_trip(tmp_path, tokenizer):
    path = write_csv(tmp_path / "all.csv", rows_for(["a"], 8, lo=2, hi=6) + rows_for(["b"], 8, lo=0, hi=1))
    task = setup(tokenizer, path, "--valid-fraction", "0", "--test-fraction", "0")
    ds = task.load_dataset("train")
    frame = task.frames["train"]
    lo = frame["prompt"].map({"a": 2.0, "b": 0.0}).to_numpy()
    hi = frame["prompt"].map({"a": 6.0, "b": 1.0}).to_numpy()
    np.testing.assert_allclose(ds.targets, (frame["score"] - lo) / (hi - lo), rtol=1e-6)
    assert ds.targets.min() == 0.0 and ds.targets.max() == 1.0
    np.testing.assert_allclose(task.prompts.unscale(ds.targets, ds.prompts), frame["score"], rtol=1e-6)


# ---------------------------------------------------------------- dataset and batches
@pytest.fixture(scope="module")
def demo_task(tokenizer):
    task = TextScoringTask.setup_task(parse_args(["--max-train-rows", "200"]), tokenizer=tokenizer)
    task.load_dataset("train")
    return task


def test_text_pairs_mark_the_context_segment(demo_task, tokenizer):
    ds = demo_task.dataset("train")
    item = ds[0]
    types = item["token_type_ids"]
    first_one = int(torch.nonzero(types)[0])
    assert types[:first_one].eq(0).all() and types[first_one:].eq(1).all()
    assert item["input_ids"][first_one - 1] == tokenizer.sep_token_id
    context = tokenizer.decode(item["input_ids"][first_one:], skip_special_tokens=True)
    assert context == tokenizer.decode(tokenizer(ds.contexts[0])["input_ids"], skip_special_tokens=True)


def test_single_texts_have_no_second_segment(tmp_path, tokenizer):
    task = setup(tokenizer, write_csv(tmp_path / "all.csv", rows_for(["a"], 10)))
    item = task.load_dataset("train")[0]
    assert not task.prompts.uses_context
    assert item.get("token_type_ids", torch.zeros(1)).eq(0).all()


def test_collater_pads_and_masks(demo_task, tokenizer):
    ds = demo_task.dataset("train")
    items = [ds[i] for i in (0, 5, 9, 17)]
    batch = ds.collater(items)
    lengths = [len(x["input_ids"]) for x in items]
    ids, mask = batch["net_input"]["input_ids"], batch["net_input"]["attention_mask"]
    assert ids.shape == mask.shape == batch["net_input"]["token_type_ids"].shape == (4, max(lengths))
    assert mask.sum(1).tolist() == lengths and batch["ntokens"] == sum(lengths)
    for row, n in enumerate(lengths):
        assert ids[row, :n].tolist() == items[row]["input_ids"].tolist()
        assert ids[row, n:].eq(tokenizer.pad_token_id).all() and mask[row, n:].eq(0).all()
    assert batch["id"].tolist() == [0, 5, 9, 17] and batch["nsentences"] == 4
    assert batch["net_input"]["prompt_ids"].tolist() == [x["prompt_id"] for x in items]
    assert torch.allclose(batch["target"], torch.tensor([x["target"] for x in items]))
    assert batch["key"] == [x["key"] for x in items]


def test_ordered_indices(demo_task):
    ds = demo_task.dataset("train")
    order = ds.ordered_indices(seed=3)
    assert sorted(order.tolist()) == list(range(len(ds)))
    assert np.all(np.diff(ds.sizes[order]) >= 0)
    assert not np.array_equal(order, ds.ordered_indices(seed=4))  # ties shuffled per seed
    assert np.array_equal(order, ds.ordered_indices(seed=3))


@pytest.mark.parametrize("max_tokens, max_sentences", [(256, None), (512, 8), (None, 5), (40, 100)])
def test_batch_by_size_bounds(demo_task, max_tokens, max_sentences):
    ds = demo_task.dataset("train")
    batches = batch_by_size(ds.ordered_indices(seed=1), ds.num_tokens, max_tokens, max_sentences)
    assert sorted(i for b in batches for i in b) == list(range(len(ds)))
    for b in batches:
        width = max(ds.sizes[b])
        if max_sentences:
            assert len(b) <= max_sentences
        if max_tokens and width <= max_tokens:
            assert len(b) * width <= max_tokens
        elif max_tokens:
            assert len(b) == 1


def test_batch_by_size_needs_a_limit():
    with pytest.raises(ValueError, match="--max-tokens or --batch-size"):
        batch_by_size([0, 1], lambda i: 3)
    with pytest.raises(ValueError, match="must be positive"):
        batch_by_size([0, 1], lambda i: 3, max_tokens=0)


def test_length_sorted_batches_pad_less_than_random_ones(demo_task):
    ds = demo_task.dataset("train")
    sorted_batches = batch_by_size(ds.ordered_indices(seed=1), ds.num_tokens, max_tokens=2048, max_sentences=16)
    rng = np.random.default_rng(0)
    random_eff = []
    for _ in range(5):
        perm = rng.permutation(len(ds))
        random_eff.append(padding_efficiency([perm[i:i + 16] for i in range(0, len(ds), 16)], ds.sizes))
    sorted_eff = padding_efficiency(sorted_batches, ds.sizes)
    print(f"\npadding efficiency on the demo train split ({len(ds)} rows): batch_by_size {sorted_eff:.3f} "
          f"({len(sorted_batches)} batches), random batches of 16 {np.mean(random_eff):.3f}")
    assert sorted_eff > max(random_eff)
    real = int(ds.sizes.sum())
    assert sorted_eff == pytest.approx(real / sum(len(b) * max(ds.sizes[b]) for b in sorted_batches))
