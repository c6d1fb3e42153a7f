"""scorelib.datasets (issue 33): a local copy, the cache or a pinned download give the same table; every way a
download goes wrong is one line, and leaves nothing half-written in the cache. No test reaches the internet: the
"upstream" is a server on 127.0.0.1 (tests/upstream_server.py) serving files rebuilt from ../shared/data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from scorelib.datasets import DownloadError, load_dataset, loader, sets
from scorelib.datasets.fetch import Source, blob_id, file_blob_id
from scorelib.errors import MissingFileError, OptionError
from upstream_server import UpstreamServer, build_upstream

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """The rebuilt upstream files, their pins, and a server for them."""
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (set SCORELIB_DATA)")
    root = tmp_path_factory.mktemp("upstream")
    pins = build_upstream(SHARED_DATA, root)
    server = UpstreamServer(root)
    yield {"root": root, "pins": pins, "server": server, "shared": SHARED_DATA}
    server.close()


@pytest.fixture
def served(upstream, monkeypatch, tmp_path):
    """Downloads go to the test server, with the rebuilt files' pins; an empty cache; no local copy."""
    server = upstream["server"]
    server.faults.clear()
    server.hits.clear()
    server.delay = 0.0
    for name, source in upstream["pins"].items():
        monkeypatch.setitem(sets.SOURCES, name, source)
    monkeypatch.setenv("SCORELIB_DATA_URL", server.url)
    monkeypatch.setenv("SCORELIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SCORELIB_DATA", raising=False)
    monkeypatch.setattr(loader, "_noticed", set())  # as in a new process: the first load prints the license
    return {**upstream, "cache": tmp_path / "cache"}


def url_path(name: str, rel: str) -> str:
    s = sets.SOURCES[name]
    return f"/{s.repo}/{s.commit}/{s.path(rel)}"


def leftovers(cache: Path) -> list[str]:
    """Files in the cache other than its lock files."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and p.name != ".scorelib.lock") \
        if cache.exists() else []


# ------------------------------------------------------------------------------------------------ the pins
def test_pins_are_git_blob_ids_and_the_issue_pins_ellipse():
    assert blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object of "hello\n"
    assert sets.SOURCES["ellipse"].commit == "b5f4469611d2596810d31d1a60921e54ce97ad07"
    assert sets.SOURCES["ellipse"].files == {"ELLIPSE_Final_github_train.csv": "cb0ceba6c68cfd28edc945204e02a93d5559d2fd"}
    mohler = sets.SOURCES["mohler"].files
    assert len(mohler) == 87 * 4 + 3 and all(len(h) == 40 for h in mohler.values())


def test_local_copy_pins_that_are_upstream_bytes(shared_data):
    """The one upstream file kept byte for byte in ../shared/data (CLEAR's README) has the blob id of the pinned
    commit's tree (git ls-tree of scrosseye/CLEAR-Corpus at dbf1cf0)."""
    readme = shared_data / "clear_readability" / "README_upstream.md"
    assert file_blob_id(readme) == "b2395ce9d1123f302f6b2d5b3fcbd025275a6c46"


# ------------------------------------------------------------------------------- the same table every way
@pytest.mark.parametrize("name", ["mohler", "clear", "ellipse"])
def test_downloaded_table_equals_the_local_copy_row_for_row(served, name, capsys):
    got = load_dataset(name)
    assert "download" in got.card.origin and not got.card.local
    local = load_dataset(name, data_dir=served["shared"], quiet=True)
    assert local.card.local
    columns = list(local.table.columns) if name != "ellipse" else ["key", "text", *sets.ELL_TRAITS]
    pd.testing.assert_frame_equal(got.table[columns], local.table[columns])
    assert got.card.rows == local.card.rows
    if name == "ellipse":  # the download adds the prompts, the overall score and the writers' groups
        assert {"overall", "gender", "race_ethnicity", "ses", "grade"} <= set(got.table.columns)
        assert got.card.columns["groups"] == ["gender", "race_ethnicity", "ses", "grade"]
        assert local.card.columns["groups"] == [] and set(local.table["prompt"]) == {"0"}
    out = capsys.readouterr().out
    assert out.count("license:") == 1 and sets.SETS[name].citation in out  # printed on the first load only
    # a second load reads the cache: no request reaches the server
    hits = sum(served["server"].hits.values())
    again = load_dataset(name)
    assert "cache" in again.card.origin and sum(served["server"].hits.values()) == hits
    pd.testing.assert_frame_equal(again.table, got.table)


def test_mohler_counts_every_row(served):
    table, card = load_dataset("mohler", quiet=True)
    assert (card.rows["read"], card.rows["kept"]) == (2442, 2273) and sum(card.rows["dropped"].values()) == 169
    whole, card_all = load_dataset("mohler", quiet=True, include_ignored=True)
    assert len(whole) == 2442 and whole["ignored_in_paper"].sum() == 169 and not card_all.rows["dropped"]
    assert set(whole["key"]) - set(table["key"]) == set(whole.loc[whole["ignored_in_paper"], "key"])


def test_unknown_name_and_incomplete_local_copy(tmp_path):
    with pytest.raises(OptionError, match="'mohlr': unknown; scorelib.datasets has mohler, clear, ellipse"):
        load_dataset("mohlr")
    (tmp_path / "feedback_prize_ell").mkdir()
    (tmp_path / "feedback_prize_ell" / "train_part1of3.csv").write_text("text_id,full_text\n")
    with pytest.raises(MissingFileError, match="without train_part2of3.csv, train_part3of3.csv"):
        load_dataset("ellipse", data_dir=tmp_path)
    with pytest.raises(MissingFileError, match="no local copy of 'mohler'"):
        load_dataset("mohler", data_dir=tmp_path)


# --------------------------------------------------------------------------------- downloads that fail
def one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def test_hash_mismatch_is_refused_naming_the_url_and_both_hashes(served):
    rel = "ELLIPSE_Final_github_train.csv"
    served["server"].faults[url_path("ellipse", rel)] = "corrupt"
    with pytest.raises(DownloadError) as e:
        load_dataset("ellipse")
    text = one_line(e.value)
    data = (served["root"] / url_path("ellipse", rel).lstrip("/")).read_bytes()
    bad = blob_id(data[:-1] + bytes([data[-1] ^ 1]))
    assert served["server"].url + url_path("ellipse", rel) in text
    assert f"hash mismatch: git blob {bad}, pinned {sets.SOURCES['ellipse'].files[rel]}" in text
    assert leftovers(served["cache"]) == []


def test_truncated_download_keeps_nothing(served):
    served["server"].faults[url_path("clear", "CLEAR_corpus_final.xlsx")] = "truncate"
    with pytest.raises(DownloadError, match="truncated") as e:
        load_dataset("clear")
    one_line(e.value)
    assert leftovers(served["cache"]) == []


def test_an_html_page_is_not_kept_as_data(served):
    served["server"].faults[url_path("ellipse", "ELLIPSE_Final_github_train.csv")] = "html"
    with pytest.raises(DownloadError, match="an HTML page arrived, not the data file") as e:
        load_dataset("ellipse")
    one_line(e.value)
    assert leftovers(served["cache"]) == []


def test_one_bad_file_of_many_keeps_the_good_ones_and_a_rerun_fetches_the_rest(served):
    served["server"].faults[url_path("mohler", "raw/5.2")] = "missing"
    with pytest.raises(DownloadError, match=r"raw/5\.2: HTTP 404") as e:
        load_dataset("mohler")
    one_line(e.value)
    kept = leftovers(served["cache"])
    assert not any(".part" in k for k in kept) and not any(k.endswith("raw/5.2") for k in kept)
    served["server"].faults.clear()
    served["server"].hits.clear()
    assert len(load_dataset("mohler", quiet=True).table) == 2273
    assert sum(served["server"].hits.values()) == 351 - len(kept)  # only what was missing


def test_offline_names_the_url_and_where_to_put_the_file(served, monkeypatch):
    import socket

    with socket.socket() as s:  # a port with nothing listening: the connection is refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SCORELIB_DATA_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError) as e:
        load_dataset("ellipse")
    text = one_line(e.value)
    source = sets.SOURCES["ellipse"]
    assert f"cannot download http://127.0.0.1:{port}/{source.repo}/{source.commit}/ELLIPSE_Final_github_train.csv" in text
    assert f"put the file there by hand: {served['cache'] / source.repo / source.commit / 'ELLIPSE_Final_github_train.csv'}" in text
    with pytest.raises(MissingFileError, match="downloading is off"):
        load_dataset("ellipse", download=False)


def test_a_changed_cache_file_is_refused(served):
    load_dataset("clear", quiet=True)
    s = sets.SOURCES["clear"]
    path = served["cache"] / s.repo / s.commit / "CLEAR_corpus_final.xlsx"
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(DownloadError, match=f"{path}: hash mismatch: .*delete it and it is downloaded again"):
        load_dataset("clear")


READ_ONLY = """
import sys
from scorelib.cli.train import cli_main
from scorelib.datasets import sets
from scorelib.datasets.fetch import Source
for name, files in {pins}.items():
    s = sets.SOURCES[name]
    sets.SOURCES[name] = Source(s.repo, s.commit, s.folder, files)
sys.exit(cli_main(["ellipse", "--save-dir", {save!r}]))
"""


def drop_root_override():
    """In the child, before exec: take CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER out of the bounding set,
    so that root, too, meets the folder's permissions (prctl PR_CAPBSET_DROP)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_read_only_cache_is_one_line_and_writes_nothing(served):
    """A cache folder the user cannot write: scorelib-train DATASET exits 2 with one line (as root, who writes
    anywhere, the child runs without the capabilities that allow it)."""
    top = Path(tempfile.mkdtemp(prefix="scorelib-ro-"))
    try:
        cache = top / "cache"
        cache.mkdir()
        os.chmod(top, 0o755)
        os.chmod(cache, 0o555)
        env = {**os.environ, "SCORELIB_CACHE": str(cache), "PYTHONPATH": str(ROOT / "src"), "HOME": str(top)}
        as_user = drop_root_override if os.geteuid() == 0 else None
        pins = {n: s.files for n, s in served["pins"].items() if n == "ellipse"}
        code = READ_ONLY.format(pins=pins, save=str(top / "run"))
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                              preexec_fn=as_user)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"scorelib-train: error: cache folder {cache}") and "is not writable" in lines[0]
        assert "SCORELIB_CACHE" in lines[0]
        assert list(cache.rglob("*")) == []
    finally:
        os.chmod(top / "cache", 0o755)
        import shutil

        shutil.rmtree(top, ignore_errors=True)


TWO = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from scorelib.datasets import load_dataset, sets
from scorelib.datasets.fetch import Source
s = sets.SOURCES["mohler"]
sets.SOURCES["mohler"] = Source(s.repo, s.commit, s.folder, {pins})
print(len(load_dataset("mohler", quiet=True).table))
"""


def test_two_processes_at_once_download_each_file_once(served):
    served["server"].delay = 0.02  # 351 files: long enough for the second process to arrive while the first works
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    code = TWO.format(pins=served["pins"]["mohler"].files)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].strip() for o in outs] == ["2273", "2273"]
    hits = served["server"].hits
    assert len(hits) == 351 and set(hits.values()) == {1}, hits.most_common(3)  # no file fetched twice
    assert not any(".part" in k for k in leftovers(served["cache"]))


# ---------------------------------------------------------------------------- a data set's name as DATA
def test_a_data_set_name_as_data_takes_its_defaults_and_its_table_goes_to_the_save_dir(served, tmp_path,
                                                                                     monkeypatch):
    from scorelib.cli.datasets import dataset_name
    from scorelib.cli.train import parse_args

    args = parse_args(["ellipse", "--save-dir", str(tmp_path / "run"), "--score-range", "0", "6"])
    assert args.data == str(tmp_path / "run" / "data" / "ellipse.csv")
    assert (args.score_column, args.score_step) == (",".join(sets.ELL_TRAITS), 0.5)
    assert args.score_range == [0.0, 6.0]  # given by the user: kept
    written = pd.read_csv(args.data, dtype={"key": str, "prompt": str})
    assert len(written) == 3911 and {"gender", "overall"} <= set(written.columns)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mohler").mkdir()
    assert dataset_name("mohler") is None and dataset_name("clear") == "clear"  # a path of that name wins
    assert dataset_name("nosuchset") is None  # left to the command's own "no such file" error


def cli_mains():
    from scorelib.cli.cv import cli_main as cv
    from scorelib.cli.eval import cli_main as eval_
    from scorelib.cli.probe import cli_main as probe
    from scorelib.cli.report import cli_main as report
    from scorelib.cli.train import cli_main as train

    return {"scorelib-train": lambda d, tmp: train([d, "--save-dir", str(tmp / "run")]),
            "scorelib-cv": lambda d, tmp: cv([d, "--save-dir", str(tmp / "cv")]),
            "scorelib-eval": lambda d, tmp: eval_([str(tmp / "run"), "--split", "test", d]),
            "scorelib-report": lambda d, tmp: report([str(tmp / "run"), d]),
            "scorelib-probe": lambda d, tmp: probe([str(tmp / "run"), d])}


def test_report_and_probe_read_the_table_a_save_dir_was_trained_on(served, tmp_path):
    """A set's name as DATA of scorelib-report / scorelib-probe: the save dir's own copy where it keeps one (the
    same rows, split the same), else the set's table written to the command's temporary folder."""
    from scorelib.cli.datasets import table_for

    kept = tmp_path / "run" / "data" / "clear.csv"
    kept.parent.mkdir(parents=True)
    kept.write_text("key,text,score\nk1,a text,1.0\n")
    assert table_for("clear", tmp_path / "run", tmp_path / "tmp") == str(kept)
    assert not (tmp_path / "tmp").exists()  # nothing loaded
    path = table_for("mohler", tmp_path / "run", tmp_path / "tmp")
    assert Path(path) == tmp_path / "tmp" / "mohler.csv" and len(pd.read_csv(path)) == 2273
    assert table_for("some/table.csv", tmp_path / "run", tmp_path / "tmp") == "some/table.csv"


@pytest.mark.parametrize("fault", ["offline", "corrupt", "truncate", "html"])
@pytest.mark.parametrize("command", ["scorelib-train", "scorelib-cv", "scorelib-eval", "scorelib-report",
                                     "scorelib-probe"])
def test_every_command_taking_a_data_set_exits_2_with_one_line(served, tmp_path, capsys, monkeypatch, command, fault):
    if fault == "offline":
        monkeypatch.setenv("SCORELIB_DATA_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    else:
        served["server"].faults[url_path("ellipse", "ELLIPSE_Final_github_train.csv")] = fault
    code = cli_mains()[command]("ellipse", tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"{command}: error: "), err
    expect = {"offline": "offline? put the file there by hand", "corrupt": "hash mismatch: git blob",
              "truncate": "truncated", "html": "an HTML page arrived"}[fault]
    assert expect in err[0]
    assert leftovers(served["cache"]) == [] and not (tmp_path / "run" / "data" / "ellipse.csv").exists()


# ---------------------------------------------------------------------------- notebook 05 as on Colab
@pytest.mark.slow
def test_notebook_05_on_a_fresh_runtime_downloads_its_data(served, tmp_path):
    """Notebook 05 in fast mode as a fresh Colab runtime meets it: no ../shared/data, an empty cache, the
    loader's base URL at the test server. It runs top to bottom, reports on the writers' groups, and the tables it
    loaded (read back from its cache) equal the shared copies row for row."""
    import nbformat

    work = tmp_path / "colab" / "content"  # ../../shared/data does not exist from here
    work.mkdir(parents=True)
    nb = nbformat.read(ROOT / "notebooks" / "05_real_essays.ipynb", as_version=4)
    pins = json.dumps({n: s.files for n, s in served["pins"].items()})
    # the test's own pins for the rebuilt files (the one change to the notebook, before its first cell)
    nb.cells.insert(0, nbformat.v4.new_code_cell(
        "from scorelib.datasets import sets\nfrom scorelib.datasets.fetch import Source\n"
        f"for _n, _files in {pins}.items():\n"
        "    _s = sets.SOURCES[_n]\n    sets.SOURCES[_n] = Source(_s.repo, _s.commit, _s.folder, _files)"))
    path = work / "05_real_essays.ipynb"
    nbformat.write(nb, path)
    env = {k: v for k, v in os.environ.items() if k not in ("SCORELIB_DATA", "SCORELIB_SHARED_DATA")}
    env.update(SCORELIB_FAST="1", SCORELIB_CACHE=str(served["cache"]), SCORELIB_DATA_URL=served["server"].url,
               PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                           "--ExecutePreprocessor.timeout=900", str(path)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = "\n".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                     for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    assert "rows from a download from " + served["server"].url in text
    assert "NOT FOUND" not in text and "race_ethnicity" in text and "DSM" in text
    for name in ("mohler", "ellipse"):
        cached = load_dataset(name, download=False, quiet=True)
        local = load_dataset(name, data_dir=served["shared"], quiet=True)
        columns = list(local.table.columns) if name == "mohler" else ["key", "text", *sets.ELL_TRAITS]
        pd.testing.assert_frame_equal(cached.table[columns], local.table[columns])


@pytest.mark.slow
def test_scorelib_train_on_a_data_set_name_trains_on_its_table(shared_data, tmp_path, capsys):
    """``scorelib-train mohler`` from the local copy: the set's range and step, its table kept in the save dir."""
    from scorelib.cli.train import cli_main

    save = tmp_path / "run"
    code = cli_main(["mohler", "--save-dir", str(save), "--cpu", "--max-epoch", "1", "--max-train-rows", "24",
                     "--max-eval-rows", "8", "--no-epoch-checkpoints", "--log-format", "simple"])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(save / "data" / "mohler.csv", dtype={"key": str, "prompt": str})
    pd.testing.assert_frame_equal(table, load_dataset("mohler", quiet=True).table, check_dtype=False)
    prompts = json.loads((save / "prompts.json").read_text())
    assert "1.1" in json.dumps(prompts) and "0.25" in json.dumps(prompts)
