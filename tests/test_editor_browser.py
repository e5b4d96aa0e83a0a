"""The scene editor of notebook 12 in a real browser (nbval cannot see a widget's front end).

Starts JupyterLab from this venv on 127.0.0.1, opens notebook 12 in headless Chromium (Debian's
``chromium``, driven by Playwright; no browser is downloaded), runs every cell, removes an instance
through the widget (the list, then the Remove button), and checks that the rendered result changed.
Skipped where no Chromium or no Playwright is installed (``.ci/run`` installs Debian's chromium).

The notebook runs at the smoke profile in ``$AMODAL_RESULTS`` (``run_all.sh --test`` gives the unit
tests a scratch folder of their own), else in a temporary folder, training the models it needs on
demand. ``AMODAL_SCREENSHOT=FILE`` also saves a screenshot of the editor there (README's).
"""
import os
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

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/12_scene_editing.ipynb"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# what this machine's Chromium needs: no sandbox as root, and no background connections to a closed network
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
RUN_LIMIT_S = 540   # the notebook's cells, models trained on demand at smoke included

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    port, token = _free_port(), "amodal-editor-test"
    env = dict(os.environ, AMODAL_PROFILE="smoke", PYTHONPATH=str(REPO), MPLBACKEND="Agg",
               AMODAL_RESULTS=os.environ.get("AMODAL_RESULTS") or tempfile.mkdtemp(prefix="amodal-browser-"),
               JUPYTER_CONFIG_DIR=str(tmp_path_factory.mktemp("jupyter-config")),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path_factory.mktemp("jupyter-workspaces")))
    env.setdefault("OMP_NUM_THREADS", "1")
    log = open(tmp_path_factory.mktemp("jupyter-log") / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}", "--ServerApp.open_browser=False",
         "--allow-root", "--LabApp.expose_app_in_browser=True",   # window.jupyterapp: its commands
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.news_url=", "--ServerApp.disable_check_xsrf=True"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start: " + Path(log.name).read_text()[-2000:])
                time.sleep(0.5)
        yield base, token
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):   # the server and the kernels it started
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def test_the_editor_removes_an_instance_in_the_browser(jupyterlab):
    from playwright.sync_api import sync_playwright
    base, token = jupyterlab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}&reset", wait_until="domcontentloaded")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            # Run every cell through JupyterLab's own command once the notebook's kernel is ready
            # (clicking the Run menu can be lost while the page is still settling on a loaded machine).
            page.wait_for_function("() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                                   " return !!(w && w.sessionContext); }", timeout=120_000)
            page.evaluate("async () => { const app = window.jupyterapp, w = app.shell.currentWidget;"
                          " await w.context.ready; await w.sessionContext.ready;"
                          " await app.commands.execute('notebook:run-all-cells'); }")
            if os.environ.get("AMODAL_BROWSER_DEBUG"):
                page.screenshot(path=os.environ["AMODAL_BROWSER_DEBUG"])
            error = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .jp-RenderedText, " \
                    ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"
            page.wait_for_selector(f".amodal-editor-remove, {error}", timeout=RUN_LIMIT_S * 1000)
            failed = page.locator("[data-mime-type='application/vnd.jupyter.error']")
            assert failed.count() == 0, "a cell of the notebook failed: " + failed.first.inner_text()[-1500:]
            remove = page.wait_for_selector(".amodal-editor-remove", timeout=RUN_LIMIT_S * 1000)
            result = page.locator("img.amodal-editor-result")
            result.wait_for(timeout=60_000)
            page.wait_for_function("() => { const i = document.querySelector('img.amodal-editor-result');"
                                   " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
            pick = page.locator(".amodal-editor-pick select")
            options = pick.locator("option").all_inner_texts()
            assert options, "the editor lists no instance"
            chosen = pick.evaluate("s => s.selectedIndex")
            pick.select_option(index=chosen if chosen >= 0 else 0)   # the instance the notebook proposes
            page.wait_for_timeout(1000)                               # its tint drawn in the scene (= the result)
            before_src, before_png = result.get_attribute("src"), result.screenshot()
            assert page.locator("img.amodal-editor-shapes").is_hidden()   # nothing completed before a removal
            remove.click()
            page.wait_for_function("s => { const i = document.querySelector('img.amodal-editor-result');"
                                   " return i && i.src !== s; }", arg=before_src, timeout=120_000)
            page.wait_for_function("() => document.querySelector('.amodal-editor-status').innerText.includes('removed')",
                                   timeout=30_000)
            after_png = result.screenshot()
            assert after_png != before_png, "the rendered result did not change"
            page.locator("img.amodal-editor-shapes").wait_for(state="visible", timeout=30_000)
            assert len(pick.locator("option").all_inner_texts()) == len(options) - 1   # the instance is gone
            shot = os.environ.get("AMODAL_SCREENSHOT")
            if shot:   # the editor alone: a viewport that holds it, no JupyterLab toast over it
                page.add_style_tag(content=".Toastify, .jp-toast-container { display: none !important; }")
                page.set_viewport_size({"width": 1400, "height": 2600})
                editor = page.locator(".amodal-editor")
                editor.scroll_into_view_if_needed()
                editor.screenshot(path=shot)
        finally:
            browser.close()
