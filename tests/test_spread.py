"""The seed spread's tables and the verdicts it qualifies (notebook 14 runs them at every profile)."""
import numpy as np
import pandas as pd
import pytest

from amodal_lib.experiments import comparison as C
from amodal_lib.experiments import spread

SCORES = ["A_full", "A_invisible", "B_full", "B_invisible"]


def runs_of(values: dict, experiment=spread.MAIN) -> pd.DataFrame:
    """{method: [per-seed A_full]} (other scores the same plus fixed offsets) -> a runs table."""
    rows = []
    for method, per_seed in values.items():
        for seed, v in enumerate(per_seed):
            rows.append({"experiment": experiment, "method": method, "seed": seed, "n": 10, "A_full": v,
                         "A_invisible": v - 40, "B_full": v - 5, "B_invisible": v - 45})
    return pd.DataFrame(rows, columns=spread.RUN_COLUMNS)


def test_parse_seeds():
    assert spread.parse_seeds("0,1, 2", [5]) == [0, 1, 2] and spread.parse_seeds(None, [3, 4]) == [3, 4]
    assert spread.parse_seeds([2, 2, 1], []) == [2, 1]
    with pytest.raises(ValueError, match="two seeds"):
        spread.parse_seeds("7", [])


def test_spread_table_gives_mean_sd_and_range_of_the_learned_rows_only():
    runs = runs_of({C.VISIBLE: [86.0, 86.0, 86.0], C.PCNET: [89.0, 90.0, 92.0], C.VAE_MODE: [93.0, 93.2, 92.9]})
    t = spread.spread_table(runs)
    assert list(t.method) == [C.PCNET, C.VAE_MODE] and (t.seeds == 3).all()
    p = t.set_index("method").loc[C.PCNET]
    assert p.A_full == pytest.approx(np.mean([89, 90, 92])) and p.A_full_range == pytest.approx(3.0)
    assert p.A_full_sd == pytest.approx(np.std([89, 90, 92], ddof=1))
    assert p.A_invisible == pytest.approx(p.A_full - 40)


def test_every_verdict_says_whether_the_seeds_agree():
    runs = runs_of({C.VISIBLE: [86.0] * 3, C.HULL: [80.0] * 3, C.PCNET: [89.0, 90.0, 92.0],
                    C.VAE_MODE: [93.0, 93.2, 92.9], C.VAE_TRANSFORMER: [89.5, 88.0, 91.0]})
    table = spread.main_table(runs, 0)
    plain = C.reading(table)
    qualified = C.reading(table, seeds=runs)
    assert len(plain) == len(qualified) and "seeds" not in " ".join(plain)
    # the transformer frame is ahead of PCNet-M with seed 0 (89.5 vs 89.0), behind with seeds 1 and 2
    line = next(s for s in qualified if s.startswith("Amodal-VAE in the transformer frame"))
    assert "89.50 vs 89.00 (ahead; within the seed spread: 1 of 3 seeds agree, margin -2.00 to +0.50) (A)" in line
    line = next(s for s in qualified if s.startswith("Amodal-VAE in the fitted frame"))
    assert "(ahead; every one of 3 seeds agrees: margin +0.90 to +4.00) (A)" in line
    rules = next(s for s in qualified if s.startswith("Against the rules"))   # a rule is the same for every seed
    assert "93.00 vs 86.00 (ahead; every one of 3 seeds agrees: margin +6.90 to +7.20) (A)" in rules


def test_rows_of_table1_and_the_robustness_curve():
    t1 = pd.DataFrame({"input": ["gt", "pred"], "method": ["m", "m"], "n": [5, 5], **{c: [1.0, 2.0] for c in SCORES}})
    rows = spread.table1_rows(t1, "pred", 3)
    assert list(rows.columns) == spread.RUN_COLUMNS and rows.A_full.tolist() == [2.0] and rows.seed.tolist() == [3]
    rob = pd.DataFrame({"kind": ["erosion", "erosion", "dilation", "dilation", "erosion"], "strength": [0.0, 1.0, 0.0, 1.0, 1.0],
                        "method": ["m", "m", "m", "m", "input mask"], "n": 4, **{c: [1.0, 2, 1, 3, 9] for c in SCORES}})
    r = spread.robustness_rows(rob, 1, ["m"])
    assert r.experiment.tolist() == ["robustness: erosion 1 px", "robustness: dilation 1 px", "robustness: none"]
    assert r.A_full.tolist() == [2.0, 3.0, 1.0]


def test_rerun_check_holds_a_rerun_against_the_seed_range():
    t = spread.spread_table(runs_of({C.PCNET: [89.0, 90.0, 92.0]}))
    lines = spread.rerun_check(t, {C.PCNET: {"A_full": (89.74, 90.05), "A_invisible": (37.14, 41.0)}})
    assert lines[0].endswith("the range over 3 seeds is 3.00: within it") and "+0.31" in lines[0]
    assert lines[1].endswith("OUTSIDE it")
    assert spread.rerun_check(t, {C.VAE_MODE: {"A_full": (1.0, 2.0)}}) == []


def test_with_seed_shares_the_data_and_moves_the_run_folders(tmp_path, monkeypatch):
    from amodal_lib import nb
    monkeypatch.setattr(nb, "RESULTS", tmp_path)
    ctx = nb.Context("99_t", "smoke", 0, {})
    ctx._paths = {"hash": "abc"}
    other = ctx.with_seed(2)
    assert other.seed == 2 and other._ann is ctx._ann and other.data() is ctx.data()
    assert other.run_dir("pcnet-m").name == "pcnet-m-abc-s2" and ctx.run_dir("pcnet-m").name == "pcnet-m-abc-s0"


def test_the_spread_qualifies_only_the_table_of_its_own_weights():
    runs = runs_of({C.VISIBLE: [86.0] * 3, C.PCNET: [89.0, 90.0, 92.0], C.VAE_MODE: [93.0, 93.2, 92.9]})
    table = spread.main_table(runs, 1)
    assert spread.seeds_for(table, runs) is not None
    table.loc[table.method == C.PCNET, "A_full"] = 89.5        # a table of other weights
    assert spread.seeds_for(table, runs) is None
