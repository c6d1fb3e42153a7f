"""The widget in a real browser: JupyterLab + headless Chromium run a notebook, type a text, click Score.

Runs on a temporary copy of ``notebooks/`` (autosave never touches the committed files) with
``SCORELIB_FAST=1``. Needs Chromium at /usr/bin/chromium (or $SCORELIB_CHROMIUM) and the
``playwright`` Python package (``pip install -e .[dev]``; no ``playwright install`` needed).
The screenshots (the page, and the scored widget alone) go to tests/artifacts/ (git-ignored) and are
copied to the system temp folder. ``SCORELIB_WIDGET_SAVE_DIR=notebooks/runs/04_demo`` points the one-cell
notebook at a full run's save dir: that is how ``notebooks/images/widget-scored.png`` is made.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import module_scratch
from scorelib.data.demo import DEMO_RANGES

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path(os.environ.get("SCORELIB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RUN_TIMEOUT_S = float(os.environ.get("SCORELIB_BROWSER_TIMEOUT", "600"))
ANSWER = os.environ.get("SCORELIB_WIDGET_ANSWER") or "A stack is last in, first out: push puts an item on top and pop takes the top item off."
SCORE_LINE = re.compile(r"(-?\d+(?:\.\d+)?) on (.+?)'s (-?\d+(?:\.\d+)?)–(-?\d+(?:\.\d+)?) scale")
# JupyterLab settings for the test server: render every cell (no virtual scrolling), no news pop-up
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}
KERNEL_IDLE_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(k && w.context && w.context.isReady && k.status === 'idle');
}"""
ACTIVATE_JS = """(path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path) { app.shell.activateById(w.id); return w.id; }
  }
  return null;
}"""
WIDGET_NOTEBOOK = """import scorelib
from pathlib import Path
from scorelib.hub.widget import ScoringWidget

save_dir = Path({save_dir!r})
scorer = scorelib.load(save_dir, device="cpu")
results = next((save_dir / "results").glob("result-checkpoint_best-*.csv"))
ScoringWidget(scorer, results=results)"""


@pytest.fixture(scope="module")
def sync_playwright():
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser: {CHROMIUM} not found (apt-get install chromium, or set SCORELIB_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"playwright is not importable ({e}); pip install playwright (or -e .[dev])")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc, url, token):
    try:  # shuts the kernels down too
        urllib.request.urlopen(urllib.request.Request(f"{url}/api/shutdown", method="POST",
                                                      headers={"Authorization": f"token {token}"}), timeout=10)
        proc.wait(timeout=30)
    except Exception:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def lab(sync_playwright, request, tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a temporary copy of notebooks/ (deleted after)."""
    with module_scratch(request, tmp_path_factory, "lab") as tmp:
        yield from _lab(tmp)


def _lab(tmp):
    """Start the server in ``tmp``; yield where it answers; stop it."""
    root = tmp / "notebooks"
    root.mkdir(parents=True)  # the test writes its own one-cell notebook here
    for name, value in LAB_SETTINGS.items():
        (tmp / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "settings" / name).write_text(json.dumps(value))
    token, port = secrets.token_hex(16), _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SCORELIB_FAST": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp / "config")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.token={token}",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers often run as root
        cmd.append("--ServerApp.allow_root=True")
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{(tmp / 'server.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in 120 s:\n{(tmp / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "token": token, "root": root, "log": tmp / "server.log"}
    finally:
        _stop(proc, url, token)
        log.close()


@pytest.fixture
def page(sync_playwright):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 1400})
        finally:
            browser.close()


def _run_all_until_widget(page, lab, notebook: str):
    """Open ``notebook``, run all cells and wait for the last Score button; fail fast on a traceback."""
    page.goto(f"{lab['url']}/lab/tree/{notebook}?token={lab['token']}")
    # JupyterLab may restore tabs of earlier tests: bring this notebook's panel to the front, look only in it
    panel_id = page.wait_for_function(ACTIVATE_JS, arg=notebook, timeout=120_000).json_value()
    page.wait_for_function(KERNEL_IDLE_JS, timeout=120_000)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    panel = page.locator(f"[id='{panel_id}']")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    errors = panel.locator(".jp-OutputArea-output").filter(has_text="Traceback")
    while panel.locator(".scorelib-score").count() == 0:
        if errors.count():
            pytest.fail(f"{notebook} raised while running:\n{errors.first.inner_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{notebook}: no Score button after {RUN_TIMEOUT_S:.0f} s")
        page.wait_for_timeout(1000)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=int(RUN_TIMEOUT_S * 1000))
    if errors.count():
        pytest.fail(f"{notebook} raised while running:\n{errors.first.inner_text()[-3000:]}")
    return panel


def test_widget_scores_a_pasted_text_in_jupyterlab(page, lab, trained_dir):
    """The widget of notebook 04's last step, typed into and clicked in JupyterLab, over the tests' small save dir.

    (nbval runs all of 04, widget cells included, in the kernel; this test adds the browser: rendering, typing,
    clicking. It used to run all of 04 a second time in JupyterLab, which checked nothing more.)"""
    import nbformat

    notebook = "widget_check.ipynb"  # a one-cell notebook over a trained save dir
    save_dir = os.environ.get("SCORELIB_WIDGET_SAVE_DIR") or trained_dir
    source = WIDGET_NOTEBOOK.format(save_dir=str(Path(save_dir).resolve()))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, lab["root"] / notebook)
    panel = _run_all_until_widget(page, lab, notebook)

    widget = panel.locator(".scorelib-widget").last
    # a long notebook: bring the widget on screen first (JupyterLab may skip drawing cells out of view)
    widget.evaluate("el => el.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(500)
    output = widget.locator(".widget-output")
    before = output.inner_text()
    widget.locator("textarea").fill(ANSWER)
    widget.locator(".scorelib-score").click()
    page.wait_for_function("([el, before]) => el.innerText !== before && el.innerText.includes('scale')",
                           arg=[output.element_handle(), before], timeout=60_000)
    widget.locator(".widget-output img").first.wait_for(timeout=30_000)
    shown = output.inner_text()
    match = SCORE_LINE.search(shown)
    assert match, f"no score line in the widget's output: {shown!r}"
    score, prompt, lo, hi = float(match[1]), match[2], float(match[3]), float(match[4])
    if prompt in DEMO_RANGES:
        assert (lo, hi) == DEMO_RANGES[prompt]
    assert lo <= score <= hi, shown
    assert "Traceback" not in shown

    widget.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"browser-{Path(notebook).stem}.png"
    page.screenshot(path=str(shot))
    shutil.copy(shot, Path(tempfile.gettempdir()) / shot.name)
    alone = ARTIFACTS / f"widget-{Path(notebook).stem}.png"
    widget.screenshot(path=str(alone))
    assert alone.stat().st_size > 0

    # the Explain toggle: each sentence shaded, its number on hover, and a text legend for static rendering
    widget.locator("textarea").fill(ANSWER + " It is used for undo. Queues are different.")
    widget.locator(".scorelib-score").click()
    widget.locator(".widget-output img").first.wait_for(timeout=60_000)
    widget.locator(".scorelib-explain-toggle").click()
    spans = widget.locator(".scorelib-explain span[title]")
    spans.first.wait_for(timeout=60_000)
    assert spans.count() == 3
    assert all(re.match(r"score: [+-]\d\.\d{3}$", spans.nth(i).get_attribute("title")) for i in range(3))
    assert "Green: raises the score; red: lowers it" in widget.locator(".scorelib-explain").inner_text()
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(ARTIFACTS / "widget-explain.png"))
    shutil.copy(ARTIFACTS / "widget-explain.png", Path(tempfile.gettempdir()) / "widget-explain.png")


def test_report_flags_table_renders_in_chromium(sync_playwright, trained_dir, tmp_path):
    """A report of the tests' small save dir, opened from disk in headless Chromium: no kernel, no network, no
    JavaScript; the flags table is drawn with one row per flag (screenshot: tests/artifacts/report.png)."""
    from scorelib.report.builder import make_report

    out = make_report(trained_dir, split="test", bootstrap=50, results_path=None)
    flags = out["report"]["flags"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400}, java_script_enabled=False)
            page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:")
                       else route.continue_())  # readable offline: anything but the file itself is refused
            page.goto(Path(out["html"]).resolve().as_uri())
            heading = page.get_by_role("heading", name="Flags 提示")
            assert heading.is_visible()
            if flags:
                table = page.locator("table#flags")
                assert table.is_visible() and table.locator("tr").count() == len(flags) + 1  # a header row
                assert flags[0]["en"].split(":")[0] in table.inner_text()
            assert page.locator("img").count() >= 1 and page.locator("img").first.evaluate("i => i.naturalWidth") > 0
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
        finally:
            browser.close()
