"""The one record of what training cost: sessions add up, and the families' earlier files still read."""
import json

import pytest
import torch

from amodal_lib.train import engine as E
from amodal_lib.train import timing


def test_sessions_add_up_and_describe(tmp_path):
    first = timing.add_session(tmp_path, "net", 10, {"cpu_s": 4.0, "wall_s": 2.0}, {"cpu_s": 1.0, "wall_s": 0.5},
                               threads=1, device="cpu")
    assert first["steps"] == 10 and first["cpu_s_per_step"] == 0.4 and first["steps_per_s"] == 5.0
    t = timing.add_session(tmp_path, "net", 5, {"cpu_s": 2.0, "wall_s": 3.0}, threads=2, device="cpu")
    assert t == timing.read(tmp_path, "net")
    assert (t["steps"], t["cpu_s"], t["wall_s"], t["prepare_cpu_s"]) == (15, 6.0, 5.0, 1.0)
    assert t["threads"] == [1, 2] and len(t["sessions"]) == 2 and t["steps_per_cpu_s"] == 2.5
    line = timing.describe(tmp_path, "net")
    assert "15 steps in 6 CPU s" in line and "2 session(s)" in line
    assert timing.read(tmp_path, "other") is None and "no timing recorded" in timing.describe(tmp_path, "other")


@pytest.mark.parametrize("name, file, legacy, expect", [
    ("spade", "timing.json", {"sessions": [{"crop_cpu_s": 1.5, "crop_wall_s": 1.0, "cpu_s": 8.0, "wall_s": 4.0,
                                            "steps": 20, "threads": 1}], "steps": 20, "train_cpu_s": 8.0},
     {"steps": 20, "cpu_s": 8.0, "prepare_cpu_s": 1.5, "threads": [1]}),
    ("inpaint-background", "inpaint-background.timing.json",
     {"cpu_seconds": 12.0, "wall_seconds": 6.0, "steps": 30, "steps_per_cpu_second": 2.5, "threads": 2},
     {"steps": 30, "cpu_s": 12.0, "wall_s": 6.0, "threads": [2]}),
    ("psp", "psp.timing.json", {"cpu_s": 9.0, "wall_s": 5.0, "prepare_cpu_s": 2.0, "prepare_s": 1.0, "threads": 1,
                                "steps": 40, "resumed": False, "device": "cpu"},
     {"steps": 40, "cpu_s": 9.0, "prepare_wall_s": 1.0, "device": "cpu"}),
])
def test_earlier_files_read_into_the_same_keys(tmp_path, name, file, legacy, expect):
    (tmp_path / file).write_text(json.dumps(legacy))
    t = timing.read(tmp_path, name)
    assert {k: t[k] for k in expect} == expect
    assert timing.describe(tmp_path, name).startswith(f"{expect['steps']} steps in")


def test_the_engine_records_each_fit_that_takes_steps(tmp_path, one_thread):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def forward(self, batch):
            return {"loss": (self.lin(batch["x"]) - batch["y"]).pow(2).mean()}

    def trainer():
        net = Net()
        return E.Trainer(net, torch.optim.SGD(net.parameters(), 0.1), {"x": torch.randn(16, 2), "y": torch.randn(16, 1)},
                         batch_size=4, steps=6, run_dir=tmp_path, name="net", seed=0, checkpoint_every=3,
                         progress=False, prepared={"cpu_s": 0.25, "wall_s": 0.5})
    trainer().fit(until=3)                  # a simulated kill after a checkpoint: one session of 3 steps
    trainer().fit()                         # resumed: 3 more
    trainer().fit()                         # already done: no session
    t = timing.read(tmp_path, "net")
    assert [s["steps"] for s in t["sessions"]] == [3, 3] and t["prepare_wall_s"] == 1.0
