"""The scene editor of notebook 12 in a real browser (nbval cannot see a widget's front end).

Starts JupyterLab from this venv on 127.0.0.1, opens notebook 12 in headless Chromium (Debian's
``chromium``, driven by Playwright; no browser is downloaded), runs every cell, removes an instance
through the widget (the list, then the Remove button), and checks that the rendered result changed.
Skipped where no Chromium or no Playwright is installed (``.ci/run`` installs Debian's chromium;
the server and the browser: ``_jupyterlab.py``).

The notebook runs at the smoke profile in ``$AMODAL_RESULTS`` (``run_all.sh --test`` gives the unit
tests a scratch folder of their own), else in a temporary folder, training the models it needs on
demand. ``AMODAL_SCREENSHOT=FILE`` also saves a screenshot of the editor there (README's).
"""
import os

from _jupyterlab import ERROR, assert_no_failed_cell, browser_page, needs_chromium, run_all_cells, server_fixture

NOTEBOOK = "notebooks/12_scene_editing.ipynb"
RUN_LIMIT_S = 540   # the notebook's cells, models trained on demand at smoke included

pytestmark = needs_chromium
jupyterlab = server_fixture(MPLBACKEND="Agg")


def test_the_editor_removes_an_instance_in_the_browser(jupyterlab):
    base, token = jupyterlab
    with browser_page() as page:
        run_all_cells(page, base, token, NOTEBOOK)
        page.wait_for_selector(f".amodal-editor-remove, {ERROR}", timeout=RUN_LIMIT_S * 1000)
        assert_no_failed_cell(page)
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
