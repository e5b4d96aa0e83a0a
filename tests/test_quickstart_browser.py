"""README's quickstart, followed as written, in a real browser: JupyterLab started with
``AMODAL_PROFILE=smoke`` and a scratch ``AMODAL_RESULTS`` opens notebook 05, which runs top to
bottom and shows what the quickstart says it shows (the main table, Fig 5 in the notebook).

The server and the browser: ``_jupyterlab.py`` (skipped without Chromium or Playwright). The
models the notebook needs are trained on demand at the smoke profile, or reused from
``$AMODAL_RESULTS`` (``run_all.sh --test`` gives the unit tests a scratch folder of their own)."""
import re

from _jupyterlab import REPO, browser_page, needs_chromium, outputs, run_all_cells, server_fixture

NOTEBOOK = "notebooks/05_mask_completion.ipynb"
RUN_LIMIT_S = 540   # the notebook's cells, its two models trained on demand at smoke included
README = (REPO / "README.md").read_text()


def test_the_quickstart_is_the_one_tested_here():
    quick = README[README.index("## Quickstart"):README.index("## Two commands")]
    command = next(line for line in quick.splitlines() if "jupyter lab" in line)
    assert "AMODAL_PROFILE=smoke" in command and "AMODAL_RESULTS=" in command and command.endswith(NOTEBOOK)
    assert "Run All Cells" in quick


jupyterlab = server_fixture(MPLBACKEND=None)   # a reader's JupyterLab: matplotlib's own backend there


@needs_chromium
def test_notebook_05_runs_top_to_bottom_and_shows_its_table_and_figure(jupyterlab):
    base, token = jupyterlab
    done = "05_mask_completion (smoke) done in"
    with browser_page() as page:
        run_all_cells(page, base, token, NOTEBOOK)
        page.wait_for_function(
            "done => { const cells = window.jupyterapp.shell.currentWidget.content.model.cells, out = [];"
            " for (let i = 0; i < cells.length; i++) if (cells.get(i).type === 'code')"
            " out.push(JSON.stringify(cells.get(i).outputs.toJSON()));"
            " const all = out.join(''); return all.includes(done) || all.includes('\"output_type\":\"error\"'); }",
            arg=done, timeout=RUN_LIMIT_S * 1000, polling=2000)
        cells = outputs(page)
        errors = [o for c in cells for o in c if o["output_type"] == "error"]
        assert not errors, "a cell failed: " + "\n".join(errors[0].get("traceback", []))[-1500:]
        text = "".join("".join(o.get("text", "")) for c in cells for o in c if o["output_type"] == "stream")
        assert "profile smoke" in text and done in text                   # every cell ran, top to bottom
        assert not re.search(re.escape(str(REPO)) + r"\b", text), "the notebook printed the repository's path"
        tables = [o for c in cells for o in c if "<table" in "".join(o.get("data", {}).get("text/html", ""))]
        pngs = [o for c in cells for o in c if o["output_type"] == "display_data" and "image/png" in o.get("data", {})]
        assert len(tables) >= 2 and len(pngs) >= 1                         # the tables; Fig 5 in the notebook
        page.evaluate("async () => { const nb = window.jupyterapp.shell.currentWidget.content, cells = nb.model.cells;"
                      " for (let i = 0; i < cells.length; i++) if (cells.get(i).type === 'code' &&"
                      " JSON.stringify(cells.get(i).outputs.toJSON()).includes('image/png'))"
                      " { await nb.scrollToItem(i, 'start'); return; } }")
        shown = page.locator(".jp-OutputArea-output img[src^='data:image/png']")   # and the browser draws it
        shown.first.wait_for(timeout=60_000)
        assert shown.first.evaluate("i => i.naturalWidth") > 500
