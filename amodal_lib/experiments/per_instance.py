"""Where the per-instance invisible mIoU is won or lost: each method's protocol-B scores per group
of instances, and each group's part of the gap between Amodal-VAE and PCNet-M (notebook 05).

:func:`gap_table` takes the per-instance tables of :func:`amodal_lib.experiments.comparison.run_methods`
(or :func:`~amodal_lib.experiments.comparison.method_tables`: nothing is completed again) and the
annotation set they were scored on, and groups the instances six ways (:data:`GROUPINGS`):

- **visible area**: terciles of the visible mask's area in pixels over the instances scored (so
  three groups of about equal size on any data; the cut points are in the labels);
- **hidden share**: the GT occlusion rate in the bins 0, 0-10, 10-25, 25-50 and 50-100 %;
- **category**;
- **image border**: whether the visible box touches the image border (``Instance.touches_border``);
- **occluders**: how many other instances' visible masks cover the instance's amodal mask
  (``Instance.occluders``): none, 1, 2, 3 or more;
- **hidden-part shape**: the elongation of the hidden part (GT amodal mask minus visible mask), the
  shape the occluders cut out of the object: the square root of the ratio of the larger to the
  smaller variance of its pixels' coordinates along their principal axes (the smaller at least
  1/12, a one-pixel line's), about L/W for an L x W strip and 1 for a disc or a square; groups
  compact (< 2), elongated (2-4) and strip (>= 4), and "no hidden part" (fewer than 3 hidden pixels).

The GT amodal masks and occlusion rates are read here for evaluation only.

Per group, :func:`gap_table` gives n, the instances with a hidden part (``n_hidden``, those the
invisible score averages over), each method's protocol-B full and invisible mIoU (``{key}_B_full``,
``{key}_B_invisible`` for the keys of :data:`METHODS`), the difference ours minus the reference on
both (``gap_B_full``, ``gap_B_invisible``), and the group's part of the overall B-invisible gap:
``gap_points``, the sum of the group's per-instance differences over all the instances with a hidden
part (so the groups of one grouping add up to the overall gap), and ``gap_share``, that as a
percentage of the overall gap. :func:`gap_reading` says it in sentences.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..data import masks as M
from ..data.records import AnnotationSet, Instance
from .comparison import PCNET, VAE_MODE, VAE_TRANSFORMER

# {column key: (row name of the main table, label)}: the methods compared, ours first, the reference last.
METHODS = {"fitted": (VAE_MODE, "Amodal-VAE, fitted frame (default)"),
           "transformer": (VAE_TRANSFORMER, "Amodal-VAE, transformer frame (the paper's)"),
           "pcnet": (PCNET, "PCNet-M")}
LABELS = {key: label for key, (_, label) in METHODS.items()}   # for viz.plot_per_instance_gap
OURS, REFERENCE = "fitted", "pcnet"
GROUPINGS = ("visible area", "hidden share", "category", "image border", "occluders", "hidden-part shape")
OCCLUSION_EDGES = (0.10, 0.25, 0.50)
ELONGATION_EDGES = (2.0, 4.0)
NO_HIDDEN = "no hidden part"


# --------------------------------------------------------------------------- what each instance is
def hidden_elongation(inst: Instance) -> float:
    """The elongation of ``inst``'s hidden part (see the module's docstring); NaN with fewer than 3
    hidden pixels or no amodal mask."""
    if inst.amodal is None:
        return float("nan")
    x, y, w, h = (int(v) for v in np.round(inst.amodal_box)) if inst.amodal_box else (0, 0, inst.width, inst.height)
    ys, xs = slice(max(y - 1, 0), y + h + 1), slice(max(x - 1, 0), x + w + 1)
    hidden = M.decode(inst.amodal)[ys, xs].astype(bool) & ~M.decode(inst.visible)[ys, xs].astype(bool)
    rows, cols = np.nonzero(hidden)
    if len(rows) < 3:
        return float("nan")
    var = np.linalg.eigvalsh(np.cov(np.stack([rows, cols]).astype(float), bias=True))
    return float(np.sqrt(max(var[1], 1 / 12) / max(var[0], 1 / 12)))


def instance_attributes(ann: AnnotationSet, ids: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """One row per instance of ``ann`` (those of ``ids`` only, when given): id, visible_area,
    touches_border, occluders (their count) and hidden_elongation."""
    want = None if ids is None else set(int(i) for i in ids)
    rows = [{"id": i.id, "visible_area": int(i.visible_area), "touches_border": bool(i.touches_border),
             "occluders": len(i.occluders), "hidden_elongation": hidden_elongation(i)}
            for i in ann.instances if want is None or i.id in want]
    return pd.DataFrame(rows, columns=["id", "visible_area", "touches_border", "occluders", "hidden_elongation"])


def _tercile_groups(area: pd.Series) -> pd.Series:
    # areas are whole pixels: "< ceil(q)" is "< q", so the labels say exactly where each group ends
    q1, q2 = (int(np.ceil(v)) for v in np.quantile(area.to_numpy(float), [1 / 3, 2 / 3]))
    small, large = f"small (< {q1} px)", f"large (>= {q2} px)"
    return pd.Series(np.where(area < q1, small, np.where(area >= q2, large, f"medium ({q1}-{q2} px)")),
                     index=area.index)


def _occlusion_groups(rate: pd.Series) -> pd.Series:
    edges = (0.0,) + OCCLUSION_EDGES + (1.0,)
    labels = [f"{100 * a:.0f}-{100 * b:.0f}%" for a, b in zip(edges[:-1], edges[1:])]
    r = rate.astype(float).fillna(0.0)
    k = np.searchsorted(np.asarray(OCCLUSION_EDGES), r.to_numpy(), side="left")   # (a, b]
    return pd.Series(np.where(r <= 0.0, "0%", np.asarray(labels)[k]), index=rate.index)


def _elongation_groups(e: pd.Series) -> pd.Series:
    lo, hi = ELONGATION_EDGES
    v = e.to_numpy(float)
    out = np.where(v < lo, f"compact (< {lo:g})", np.where(v < hi, f"elongated ({lo:g}-{hi:g})", f"strip (>= {hi:g})"))
    return pd.Series(np.where(np.isnan(v), NO_HIDDEN, out), index=e.index)


def _group_order(grouping: str, labels: pd.Series) -> list:
    """The groups of one grouping in reading order: by size and share as their scale goes, else by name."""
    present = list(dict.fromkeys(labels))
    fixed = {"visible area": ["small", "medium", "large"], "hidden share": ["0%", "0-", "10-", "25-", "50-"],
             "image border": ["inside", "touches"], "occluders": ["none", "1", "2", "3+"],
             "hidden-part shape": ["compact", "elongated", "strip", NO_HIDDEN]}.get(grouping)
    if fixed is None:
        return sorted(present)
    return sorted(present, key=lambda g: next((k for k, p in enumerate(fixed) if g.startswith(p)), len(fixed)))


def group_labels(attrs: pd.DataFrame) -> dict:
    """{grouping: (N,) group label per row} of a table holding :func:`instance_attributes`' columns
    and the instance tables' ``category`` and ``occlusion_rate``."""
    occ = attrs.occluders.astype(int)
    return {"visible area": _tercile_groups(attrs.visible_area),
            "hidden share": _occlusion_groups(attrs.occlusion_rate),
            "category": attrs.category.astype(str),
            "image border": pd.Series(np.where(attrs.touches_border, "touches the border", "inside the image"),
                                      index=attrs.index),
            "occluders": pd.Series(np.where(occ == 0, "none", np.where(occ >= 3, "3+", occ.astype(str))),
                                   index=attrs.index),
            "hidden-part shape": _elongation_groups(attrs.hidden_elongation)}


# --------------------------------------------------------------------------- the table
def _per_instance(tables: dict, methods: dict) -> pd.DataFrame:
    """One row per instance: category, occlusion_rate, has_hidden and each method's full and
    invisible IoU (``{key}_full``, ``{key}_inv``), joined on the instance id."""
    first = None
    for key, (name, _) in methods.items():
        if name not in tables:
            raise ValueError(f"no per-instance table for {name!r} (have: {', '.join(tables)})")
        t = tables[name]
        cols = t[["id", "full_iou"]].assign(inv=t.inv_inter / t.inv_union.clip(lower=1)).rename(
            columns={"full_iou": f"{key}_full", "inv": f"{key}_inv"})
        if first is None:
            first = t[["id", "category", "occlusion_rate"]].assign(has_hidden=t.gt_hidden > 0).merge(cols, on="id")
            continue
        if set(t.id) != set(first.id):
            raise ValueError(f"{name!r} scores other instances than {methods[next(iter(methods))][0]!r}")
        first = first.merge(cols, on="id")
    return first


def gap_table(tables: dict, ann: AnnotationSet, methods: Optional[dict] = None, ours: str = OURS,
              reference: str = REFERENCE) -> pd.DataFrame:
    """The long table of the module's docstring: one row per (grouping, group), the first row
    (grouping "all") over every instance. ``tables``: {main-table row name: per-instance table}
    (``metrics.instance_table``'s columns); ``ann``: the instances they score (their records give
    the size, border contact and occluders); ``methods``: {column key: (row name, label)}, default
    :data:`METHODS`; ``ours`` and ``reference``: the two keys the gap compares."""
    methods = methods or METHODS
    if ours not in methods or reference not in methods:
        raise ValueError(f"ours ({ours!r}) and reference ({reference!r}) must be keys of methods ({', '.join(methods)})")
    per = _per_instance(tables, methods)
    attrs = instance_attributes(ann, per.id)
    missing = set(per.id) - set(attrs.id)
    if missing:
        raise ValueError(f"{len(missing)} scored instances are not in {ann.path} (e.g. id {min(missing)})")
    per = per.merge(attrs, on="id")
    hidden = per.has_hidden.to_numpy()
    diff = np.where(hidden, per[f"{ours}_inv"] - per[f"{reference}_inv"], 0.0)
    n_hidden_all = int(hidden.sum())
    total = 100.0 * diff.sum() / n_hidden_all if n_hidden_all else np.nan
    labels = {"all": pd.Series("all instances", index=per.index), **group_labels(per)}
    rows = []
    for grouping, lab in labels.items():
        for group in _group_order(grouping, lab):
            sel = (lab == group).to_numpy()
            h = sel & hidden
            row = {"grouping": grouping, "group": group, "n": int(sel.sum()), "n_hidden": int(h.sum())}
            for key in methods:
                row[f"{key}_B_full"] = 100.0 * per.loc[sel, f"{key}_full"].mean()
                row[f"{key}_B_invisible"] = 100.0 * per.loc[h, f"{key}_inv"].mean() if h.any() else np.nan
            row["gap_B_full"] = row[f"{ours}_B_full"] - row[f"{reference}_B_full"]
            row["gap_B_invisible"] = row[f"{ours}_B_invisible"] - row[f"{reference}_B_invisible"]
            points = 100.0 * diff[sel].sum() / n_hidden_all if n_hidden_all else np.nan
            row["gap_points"] = points if h.any() else np.nan
            row["gap_share"] = 100.0 * points / total if h.any() and total else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- in words
def _group_text(r, ours: str, reference: str) -> str:
    return (f"{r.group} ({r[f'{ours}_B_invisible']:.2f} vs {r[f'{reference}_B_invisible']:.2f}, "
            f"{int(r.n_hidden)} with a hidden part)")


def gap_reading(table: pd.DataFrame, methods: Optional[dict] = None, ours: str = OURS, reference: str = REFERENCE,
                min_hidden: int = 10) -> list:
    """Sentences :func:`gap_table`'s table supports: the overall B-invisible scores and gap, then per
    grouping the groups where the reference leads ours (groups with at least ``min_hidden``
    instances with a hidden part) and the group that adds most to the reference's side of the gap."""
    methods = methods or METHODS
    lo, lr = methods[ours][1], methods[reference][1]
    top = table[table.grouping == "all"].iloc[0]
    if not top.n_hidden:
        return ["No scored instance has a hidden part: no invisible score to compare."]
    scores = ", ".join(f"{label} {top[f'{k}_B_invisible']:.2f}" for k, (_, label) in methods.items())
    gap = top.gap_B_invisible
    out = [f"Over the {int(top.n_hidden)} instances with a hidden part, invisible mIoU (B): {scores}; {lo} is "
           f"{abs(gap):.2f} points {'ahead of' if gap > 0 else 'behind' if gap < 0 else 'level with'} {lr} "
           f"(below, groups with fewer than {min_hidden} instances with a hidden part are not read)."]
    for grouping in GROUPINGS:
        g = table[(table.grouping == grouping) & (table.n_hidden >= min_hidden)]
        if g.empty:
            out.append(f"By {grouping}: no group has {min_hidden} instances with a hidden part.")
            continue
        lead = g[g.gap_B_invisible < 0]
        said = (f"{lr} leads in " + "; ".join(_group_text(r, ours, reference) for _, r in lead.iterrows())
                if len(lead) else f"{lr} leads in no group")
        worst = g.sort_values("gap_points").iloc[0]
        if worst.gap_points < 0:
            said += (f"; the most of {lr}'s side comes from {worst.group}: {worst.gap_points:+.2f} points of the "
                     f"overall {gap:+.2f}")
        out.append(f"By {grouping}: {said}.")
    return out
