"""The seed spread (notebook 14): the learned rows of the main table (notebook 05), of Table 1 and
of the robustness curve (notebook 11) trained and scored again with other seeds, and how large a
difference between two rows, or between two runs, must be to mean something.

Only the training seed changes. The data set, the test instances, the posterior samples of the
best-of-k row and the corruptions of the robustness curve are drawn with the notebook's own seed,
so the rows of that seed are notebooks 05's and 11's numbers. A run of the same commit and seed on
another machine differs the way another training seed does (floating-point sums taken in another
order change every step after the first), so the spread over seeds is what such a rerun should be
expected to stay within; :func:`rerun_check` holds the one such rerun measured so far against it.

- :func:`main_rows`, :func:`table1_rows`, :func:`robustness_rows`: one seed's learned rows, one
  row per (experiment, method) with the seed and the four scores (the ``runs`` table);
- :func:`spread_table`: per (experiment, method), over the seeds: the mean, standard deviation and
  range (max - min) of each score;
- :func:`amodal_lib.experiments.comparison.reading` with the main table's ``runs`` rows says, after
  each "ahead" / "behind" of the main table, whether every seed agrees with it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .. import metrics
from ..metrics import SCORE_COLUMNS
from .analysis import completion_table
from .comparison import HULL, ORACLE, PCNET, VAE_MODE, VISIBLE

MAIN = "main table"
TABLE1 = "Table 1 (predicted visible masks)"
RULES = (VISIBLE, HULL, ORACLE)   # the main table's rows that no seed changes
RUN_COLUMNS = ["experiment", "method", "seed", "n", *SCORE_COLUMNS]

#: One rerun of ``./run_all.sh`` at the default profile on another machine (2 cores, another CPU):
#: the same commit (4436cbd), seed, data and rules; {row: {score: (committed results/, the rerun)}}.
CROSS_MACHINE = {PCNET: {"A_full": (89.74, 90.05), "A_invisible": (37.14, 39.16)},
                 VAE_MODE: {"A_full": (93.07, 93.14), "A_invisible": (51.57, 51.93)}}
CROSS_MACHINE_RUN = ("default", "synth")   # the (profile, data set) it was measured on


def parse_seeds(seeds, default: Sequence[int]) -> list:
    """``seeds`` as a list of distinct ints: a list, or a string "0,1,2" (``run_all.sh --seeds``);
    None: ``default``. Fewer than two seeds make no spread: a ValueError."""
    if seeds is None:
        out = [int(s) for s in default]
    elif isinstance(seeds, str):
        out = [int(s) for s in seeds.replace(" ", "").split(",") if s]
    else:
        out = [int(s) for s in seeds]
    out = list(dict.fromkeys(out))
    if len(out) < 2:
        raise ValueError(f"a spread needs two seeds or more, got {out}")
    return out


def _rows(table: pd.DataFrame, experiment: str, seed: int) -> pd.DataFrame:
    out = table.assign(experiment=experiment, seed=int(seed))
    return out[RUN_COLUMNS].reset_index(drop=True)


def main_rows(tables: dict, seed: int) -> pd.DataFrame:
    """The main table of one seed (``tables``: :func:`amodal_lib.experiments.comparison.method_tables`'s
    per-instance tables), every row: the rules' (:data:`RULES`) are the same for each seed, and
    :func:`spread_table` leaves them out."""
    summ = {k: metrics.summarize(t) for k, t in tables.items()}
    return _rows(completion_table(summ), MAIN, seed)


def table1_rows(table1: pd.DataFrame, predicted_input: str, seed: int) -> pd.DataFrame:
    """Table 1's rows with predicted visible masks as input (:func:`amodal_lib.experiments.segmentation_input.table1`):
    each is learned, the input mask itself being the segmentation network's."""
    return _rows(table1[table1.input == predicted_input], TABLE1, seed)


def robustness_rows(rob: pd.DataFrame, seed: int, methods: Sequence[str]) -> pd.DataFrame:
    """The robustness curve's rows of ``methods`` (:func:`amodal_lib.experiments.segmentation_input.robustness`),
    one experiment per corruption and strength ("robustness: erosion 2 px"; strength 0, the GT
    masks, once as "robustness: none")."""
    r = rob[rob.method.isin(methods)].copy()
    r = pd.concat([r[r.strength > 0], r[r.strength == 0].drop_duplicates("method").assign(kind="none")])
    r["experiment"] = [f"robustness: {k}" if s == 0 else f"robustness: {k} {s:g} px" for k, s in zip(r.kind, r.strength)]
    r["seed"] = int(seed)
    return r[RUN_COLUMNS].reset_index(drop=True)


def spread_table(runs: pd.DataFrame, leave_out: Sequence[str] = RULES) -> pd.DataFrame:
    """Per (experiment, method) of the ``runs`` rows (in their order; ``leave_out``: rows no seed
    changes): the seeds, then for each score its mean over the seeds, its standard deviation
    (``_sd``, n - 1) and its range (``_range``, max - min)."""
    r = runs[~runs.method.isin(leave_out)]
    rows = []
    for (exp, method), g in r.groupby(["experiment", "method"], sort=False):
        row = {"experiment": exp, "method": method, "seeds": int(g.seed.nunique())}
        for c in SCORE_COLUMNS:
            v = g[c].astype(float).dropna()
            row[c] = float(v.mean()) if len(v) else np.nan
            row[f"{c}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else np.nan
            row[f"{c}_range"] = float(v.max() - v.min()) if len(v) else np.nan
        rows.append(row)
    cols = ["experiment", "method", "seeds"] + [f"{c}{s}" for c in SCORE_COLUMNS for s in ("", "_sd", "_range")]
    return pd.DataFrame(rows, columns=cols)


def main_table(runs: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The main table of ``seed`` (method, n and the scores), as notebook 05 writes it."""
    t = runs[(runs.experiment == MAIN) & (runs.seed == seed)]
    return t[["method", "n", *SCORE_COLUMNS]].reset_index(drop=True)


def rerun_check(spread: pd.DataFrame, rerun: Optional[dict] = None) -> list:
    """Sentences: for each row and score of ``rerun`` (default :data:`CROSS_MACHINE`), the difference
    between the rerun on another machine and the committed run, against the row's range over the
    seeds of ``spread`` (its main-table rows): within it, or not."""
    s = spread[spread.experiment == MAIN].set_index("method")
    out = []
    for method, scores in (rerun or CROSS_MACHINE).items():
        for col, (committed, again) in scores.items():
            if method not in s.index or pd.isna(s.loc[method, f"{col}_range"]):
                continue
            diff, rng = again - committed, float(s.loc[method, f"{col}_range"])
            out.append(f"{method}, {col}: the rerun on another machine differs by {diff:+.2f} ({committed:.2f} -> "
                       f"{again:.2f}); the range over {int(s.loc[method, 'seeds'])} seeds is {rng:.2f}: "
                       f"{'within' if abs(diff) <= rng else 'OUTSIDE'} it")
    return out


def seeds_for(table: pd.DataFrame, runs: pd.DataFrame) -> Optional[pd.DataFrame]:
    """The main-table rows of ``runs`` when one of its seeds scored exactly the learned rows of
    ``table`` (a main table, e.g. results/tables/table_completion.csv: the spread was made from the
    same weights), else None (a spread of other weights says nothing about this table)."""
    main = runs[runs.experiment == MAIN]
    t = table.set_index("method")
    learned = [m for m in t.index if m not in RULES]
    for _, g in main.groupby("seed"):
        g = g.set_index("method")
        if learned and set(learned) <= set(g.index) and np.allclose(
                g.loc[learned, SCORE_COLUMNS].to_numpy(float), t.loc[learned, SCORE_COLUMNS].to_numpy(float),
                atol=1e-6, equal_nan=True):
            return main
    return None
