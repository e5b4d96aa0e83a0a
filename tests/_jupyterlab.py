"""JupyterLab in a real browser, for the tests that need a notebook's front end: a JupyterLab
server started from this venv on 127.0.0.1, and headless Chromium (Debian's ``chromium``, driven
by Playwright; no browser is downloaded) opening a notebook in it and running every cell.

The tests that use it are skipped where no Chromium or no Playwright is installed (``.ci/run``
installs Debian's chromium)."""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# what this machine's Chromium needs: no sandbox as root, and no background connections to a closed network
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
# a cell's output that says it failed
ERROR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .jp-RenderedText, " \
        ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(tmp_path_factory, env: dict):
    """A JupyterLab server on the repository with ``env``; yields (base URL, token)."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    port, token = _free_port(), "amodal-browser-test"
    settings = tmp_path_factory.mktemp("jupyterlab-settings")
    # no autosave: the notebook run in the browser must not be written back, outputs and all, into notebooks/
    (settings / "@jupyterlab" / "docmanager-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings").write_text('{"autosave": false}')
    env = dict(env, JUPYTER_CONFIG_DIR=str(tmp_path_factory.mktemp("jupyter-config")),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path_factory.mktemp("jupyter-workspaces")),
               JUPYTERLAB_SETTINGS_DIR=str(settings))
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
        plugin = json.loads(urllib.request.urlopen(f"{base}/lab/api/settings/@jupyterlab/docmanager-extension:plugin"
                                                   f"?token={token}", timeout=30).read())
        assert plugin["settings"]["autosave"] is False, "JupyterLab would save the notebook under test"
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


def server_fixture(**env):
    """A module-scoped fixture ``jupyterlab`` -> (base URL, token): a server at the smoke profile
    whose results go to ``$AMODAL_RESULTS`` (``run_all.sh --test`` gives the unit tests a scratch
    folder of their own; models trained there are reused), else pytest's temporary folder; ``env`` is
    added to this process's environment, a value None removing that variable."""
    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        scratch = os.environ.get("AMODAL_RESULTS") or str(tmp_path_factory.mktemp("amodal-browser"))
        full = {**os.environ, "AMODAL_PROFILE": "smoke", "PYTHONPATH": str(REPO), "AMODAL_RESULTS": scratch, **env}
        with jupyterlab(tmp_path_factory, {k: v for k, v in full.items() if v is not None}) as started:
            yield started
    return server


@contextlib.contextmanager
def browser_page(viewport=(1400, 1000)):
    """A page of headless Chromium."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        finally:
            browser.close()


def run_all_cells(page, base: str, token: str, notebook: str) -> None:
    """Open ``notebook`` (a path in the repository) in JupyterLab and run every cell."""
    page.goto(f"{base}/lab/tree/{notebook}?token={token}&reset", wait_until="domcontentloaded")
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


def outputs(page) -> list:
    """Every code cell's outputs (nbformat JSON), from the open notebook's model: all of them, where
    the page shows only the cells in view."""
    return page.evaluate("() => { const w = window.jupyterapp.shell.currentWidget, cells = w.content.model.cells;"
                         " const out = []; for (let i = 0; i < cells.length; i++) { const c = cells.get(i);"
                         " if (c.type === 'code') out.push(c.outputs.toJSON()); } return out; }")


def assert_no_failed_cell(page) -> None:
    failed = page.locator("[data-mime-type='application/vnd.jupyter.error']")
    assert failed.count() == 0, "a cell of the notebook failed: " + failed.first.inner_text()[-1500:]
