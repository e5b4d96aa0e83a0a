"""``results/README.md``: a short index written from the manifest, per notebook its headline table,
key figure, one line against the paper (computed from its outputs), and links that resolve."""
import json
import re
from pathlib import Path

import pandas as pd

from amodal_lib import report

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _run(tmp_path, notebook, outputs):
    return {"notebook": notebook, "profile": "default", "outputs": outputs, "seconds": 60.0,
            "data": {"root": "embedded", "hash": "abc"}, "commit": "1234567"}


def test_reading_shows_a_statement_whole_reads_the_main_table_and_keeps_experiments_apart(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    statement = "Wider posterior with more occlusion does NOT hold on this data: " + "x" * 400 + " (the end)."
    (tables / "posterior_width.json").write_text(json.dumps({"statement": statement}))
    (tables / "pcnet_test_miou.md").write_text("| method | A_full |\n|---|---|\n| PCNet-M (t = 0.2) | 90.19 |\n")
    pd.DataFrame({"method": ["PCNet-M", "Amodal-VAE (mode, fitted frame)", "Amodal-VAE (mode, GT amodal box)"],
                  "n": [3, 3, 3], "A_full": [90.19, 90.92, 94.52], "A_invisible": [39.73, 33.78, 59.97],
                  "B_full": [85.41, 84.66, 91.06], "B_invisible": [43.33, 32.15, 56.71],
                  "A_full_share": [1, 2, 3]}).to_csv(tables / "table_completion.csv", index=False)
    (tables / "table_completion.md").write_text("| method | n | A_full | A_full_share |\n|---|---|---|---|\n"
                                                "| PCNet-M | 3 | 90.19 | 1.00 |\n")
    runs = [_run(tmp_path, "05_mask_completion", ["tables/table_completion.csv", "tables/table_completion.md"]),
            _run(tmp_path, "07_posterior_width", ["tables/posterior_width.json"]),
            _run(tmp_path, "10_pcnet_baseline", ["tables/pcnet_test_miou.md"])]
    text = report.render(runs, tmp_path)
    assert "(the end)." in text                                   # no statement cut short
    deocclusion = [line for line in text.splitlines() if "84.94" in line]
    assert len(deocclusion) == 1 and "not comparable" in deocclusion[0] and "predicted" in deocclusion[0]
    main = next(line for line in text.splitlines() if line.startswith("Paper (the same experiment, on KINS): Amodal"))
    assert "94.68 / 62.85" in main and "fitted frame (the default) 90.92 / 33.78" in main and "PCNet-M 90.19 / 39.73" in main
    assert "| method | n | A_full |" in text and "A_full_share" not in text     # the headline's columns only


def test_a_headline_table_is_cut_to_its_rows_and_columns():
    md = "| a | b | c |\n|---|---|---|\n" + "".join(f"| {k} | x{k} | y |\n" for k in range(20))
    lines = report.markdown_table(md, ("a", "b"), rows=3)
    assert lines == ["| a | b |", "|---|---|", "| 0 | x0 |", "| 1 | x1 |", "| 2 | x2 |",
                     "| (17 more rows in the full table) | |"]
    assert report.markdown_table(md, (), rows=2, where=lambda r: r["a"] in ("3", "4"))[2:] == ["| 3 | x3 | y |",
                                                                                            "| 4 | x4 | y |"]


def test_the_committed_index_is_short_and_its_links_resolve():
    """On the committed results (every notebook at the default profile): under 400 lines, a
    section per notebook with a figure, and every link a file of results/."""
    runs = json.loads((RESULTS / "manifest.json").read_text())
    text = report.render(runs, RESULTS)
    assert len(text.splitlines()) < 400
    for r in runs:
        assert f"## {r['notebook']} ({r['profile']})" in text
    assert text.count("![") >= len(runs)
    links = re.findall(r"\]\(([^)#]+)\)", text)
    missing = [p for p in links if not p.startswith("../") and not (RESULTS / p).is_file()]
    assert links and missing == []
    assert (RESULTS.parent / "README.md").is_file() and "## Glossary" in (RESULTS.parent / "README.md").read_text()
