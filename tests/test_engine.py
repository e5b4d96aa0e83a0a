"""The training engine: devices, checkpoints (weights_only), exact resume, NaN guard, DDP on CPU."""
import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from amodal_lib.train import engine as E

ROOT = Path(__file__).resolve().parents[1]


class Tiny(nn.Module):
    """A model with batch norm (buffers) and noise (global RNG), like the VAE."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, batch):
        noise = 0.01 * torch.randn_like(batch["x"])
        return {"loss": ((self.net(batch["x"] + noise) - batch["y"]) ** 2).mean()}


def _data(n=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    return {"x": x, "y": x.sum(1, keepdim=True)}


def _trainer(run_dir, steps=20, **kw):
    E.seed_everything(0)
    model = Tiny()
    return E.Trainer(model, torch.optim.Adam(model.parameters(), 1e-2), _data(), batch_size=16, steps=steps,
                     run_dir=run_dir, name="tiny", stage="t", seed=0, checkpoint_every=5, log_every=5,
                     device="cpu", progress=False, config={"lr": 1e-2, "sizes": (1, 2)}, **kw)


def test_resolve_device():
    assert E.resolve_device("cpu").type == "cpu"
    assert E.resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            E.resolve_device("cuda:1")
    with pytest.raises(ValueError):
        E.resolve_device("tpu-nonsense")


def test_checkpoint_loads_weights_only(tmp_path):
    tr = _trainer(tmp_path)
    tr.fit()
    ck = torch.load(tmp_path / "tiny.pt", weights_only=True)  # raises if anything needs code to load
    assert ck["step"] == 20 and ck["done"] and ck["config"] == {"lr": 0.01, "sizes": [1, 2]}
    assert set(ck["rng"][0]) >= {"torch", "numpy", "python"}
    assert isinstance(ck["generator"], torch.Tensor)
    lines = (tmp_path / "tiny.history.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [5, 10, 15, 20]


def test_resume_reaches_same_weights(tmp_path):
    full = _trainer(tmp_path / "a")
    full.fit()
    killed = _trainer(tmp_path / "b")
    killed.fit(until=13)  # last checkpoint at step 10; steps 11-13 are lost, as in a kill
    assert torch.load(tmp_path / "b" / "tiny.pt", weights_only=True)["step"] == 10
    torch.manual_seed(12345)  # a fresh process has other RNG states: resume must restore them
    resumed = _trainer(tmp_path / "b")
    resumed.fit()
    assert resumed.step == 20
    for (k, a), b in zip(full.raw_model.state_dict().items(), resumed.raw_model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [h["step"] for h in resumed.history] == [h["step"] for h in full.history]


def test_nan_stops_run_and_keeps_last_checkpoint(tmp_path):
    def step_fn(model, batch, step):
        out = model(batch)
        if step == 8:
            out["loss"] = out["loss"] * float("nan")
        return out

    tr = _trainer(tmp_path, step_fn=step_fn)
    with pytest.raises(E.NonFiniteLossError, match=r"stage t: loss 'loss' became nan at step 8"):
        tr.fit()
    ck = torch.load(tmp_path / "tiny.pt", weights_only=True)
    assert ck["step"] == 5 and not ck["done"]


def test_eval_metrics_enter_history(tmp_path):
    tr = _trainer(tmp_path, eval_fn=lambda m, s: {"val_metric": float(s)}, eval_every=10)
    hist = tr.fit()
    vals = [h for h in hist if h["split"] == "val"]
    assert [v["step"] for v in vals] == [10, 20] and vals[-1]["val_metric"] == 20.0



def test_fit_runs_on_the_threads_asked_and_restores_them(tmp_path):
    seen = []
    tr = _trainer(tmp_path, steps=2, step_fn=lambda model, batch, step: (seen.append(torch.get_num_threads()),
                                                                         model(batch))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tr.fit(threads=1)
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_select_ends_with_the_best_evaluation(tmp_path):
    """With select=..., the run ends with the weights of the best evaluation, here step 10's
    (scores 0: start, 3: step 5, 9: step 10, 1: step 15, 2: step 20); the checkpoint says so."""
    scores = {0: 0.0, 5: 3.0, 10: 9.0, 15: 1.0, 20: 2.0}
    seen: dict = {}

    def eval_fn(model, step):
        seen[step] = _weights(model)
        return {"score": scores[step]}
    tr = _trainer(tmp_path, eval_fn=eval_fn, eval_every=5, select="score")
    hist = tr.fit()
    assert sorted(seen) == [0, 5, 10, 15, 20]  # the starting weights are evaluated too
    for k, v in tr.raw_model.state_dict().items():
        assert torch.equal(v, seen[10][k]), k
    assert not all(torch.equal(v, seen[20][k]) for k, v in tr.raw_model.state_dict().items())
    ck = torch.load(tmp_path / "tiny.pt", weights_only=True)
    assert ck["selected"] == {"metric": "score", "step": 10, "value": 9.0}
    for k, v in ck["model"].items():
        assert torch.equal(v, seen[10][k]), k
    assert hist[-1] == {"split": "selected", "stage": "t", "step": 10, "score": 9.0}


def test_select_keeps_the_start_when_training_only_hurts(tmp_path):
    tr = _trainer(tmp_path, eval_fn=lambda m, s: {"score": -float(s)}, eval_every=10, select="score")
    start = _weights(tr.raw_model)
    tr.fit()
    assert tr.selected["step"] == 0
    for k, v in tr.raw_model.state_dict().items():
        assert torch.equal(v, start[k]), k


def test_select_survives_resume(tmp_path):
    """The best weights are checkpointed: a run killed after its best evaluation still ends with them."""
    scores = {0: 0.0, 5: 1.0, 10: 5.0, 15: 2.0, 20: 3.0}
    full = _trainer(tmp_path / "a", eval_fn=lambda m, s: {"score": scores[s]}, eval_every=5, select="score")
    full.fit()
    killed = _trainer(tmp_path / "b", eval_fn=lambda m, s: {"score": scores[s]}, eval_every=5, select="score")
    killed.fit(until=17)  # checkpoint at 15 holds step 10's weights as the best
    resumed = _trainer(tmp_path / "b", eval_fn=lambda m, s: {"score": scores[s]}, eval_every=5, select="score")
    resumed.fit()
    assert resumed.selected == full.selected == {"metric": "score", "step": 10, "value": 5.0}
    for (k, a), b in zip(full.raw_model.state_dict().items(), resumed.raw_model.state_dict().values()):
        assert torch.equal(a, b), k


def test_keep_holds_another_metric_best_weights_through_a_resume(tmp_path):
    """``keep``: the best evaluation by another score is kept beside the run's own (checkpointed, so a
    resumed run keeps it too), without being ended with."""
    own = {0: 0.0, 5: 1.0, 10: 5.0, 15: 2.0, 20: 3.0}
    other = {0: 0.0, 5: 4.0, 10: 1.0, 15: 2.0, 20: 3.0}

    def run(folder, until=None):
        tr = _trainer(folder, eval_fn=lambda m, s: {"score": own[s], "other": other[s]}, eval_every=5,
                      select="score", keep=("other",))
        tr.fit(until=until)
        return tr
    full = run(tmp_path / "a")
    run(tmp_path / "b", until=12)   # killed after step 10's checkpoint: step 5 is the other's best so far
    resumed = run(tmp_path / "b")
    assert full.selected["step"] == 10
    for tr in (full, resumed):
        kept = tr.kept["other"]
        assert kept["step"] == 5 and kept["value"] == 4.0
    for (k, a), b in zip(full.kept["other"]["model"].items(), resumed.kept["other"]["model"].values()):
        assert torch.equal(a, b), k
    assert not all(torch.equal(a, full.raw_model.state_dict()[k]) for k, a in full.kept["other"]["model"].items())
    ck = torch.load(tmp_path / "a" / "tiny.pt", weights_only=True)
    assert ck["kept"]["other"]["step"] == 5


def test_select_names_a_missing_metric(tmp_path):
    tr = _trainer(tmp_path, eval_fn=lambda m, s: {"other": 1.0}, eval_every=5, select="score")
    with pytest.raises(KeyError, match="select='score'.*other"):
        tr.fit()

DDP_SCRIPT = r"""
import sys, torch
from amodal_lib.train import engine as E
sys.path.insert(0, sys.argv[2])
from test_engine import Tiny, _data
dist = E.setup_distributed("cpu")
E.seed_everything(0)
m = Tiny()
tr = E.Trainer(m, torch.optim.Adam(m.parameters(), 1e-2), _data(), batch_size=16, steps=6,
               run_dir=sys.argv[1], name="ddp", stage="ddp", dist=dist, progress=False, checkpoint_every=3)
tr.fit()
vec = torch.cat([p.detach().flatten() for p in m.parameters()])
torch.save(vec, f"{sys.argv[1]}/rank{dist.rank}.pt")
"""


TEARDOWN_ABORT = "terminate called without an active exception"


def _run_ddp_job(folder: Path) -> subprocess.CompletedProcess:
    folder.mkdir()
    script = folder / "ddp_job.py"
    script.write_text(DDP_SCRIPT)
    # faulthandler: an abort prints every thread's Python stack, so a failure says where it happened
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONFAULTHANDLER="1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), str(script), str(folder),
                           str(Path(__file__).parent)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=folder)


def _trained(folder: Path) -> bool:
    """The run's final checkpoint is written (every rank reached it: saving is collective)."""
    try:
        return bool(torch.load(folder / "ddp.pt", weights_only=True)["done"])
    except (OSError, RuntimeError, KeyError, EOFError):
        return False


def test_ddp_two_cpu_processes_hold_same_weights(tmp_path):
    """Two gloo processes under torchrun train to the same weights and checkpoint both RNG states.

    One failure is outside our code: on a loaded 2-core machine, about one run in 50 to 75 (2 of 150
    measured; the one whose folder was examined had written its final checkpoint), a rank aborts on
    its way out with "terminate called without an active exception". gloo's threads are still alive
    then, whatever we do at exit: once DDP has wrapped a model, torch keeps the process group
    referenced, so ``destroy_process_group`` cannot stop them. Only that abort, after the collective
    final checkpoint is written, earns one second try in a fresh folder; any other failure, or that
    abort twice, fails the test."""
    for attempt in (1, 2):
        folder = tmp_path / f"try{attempt}"
        r = _run_ddp_job(folder)
        if r.returncode == 0 or attempt == 2 or not (TEARDOWN_ABORT in r.stderr and _trained(folder)):
            break
        warnings.warn(f"DDP job aborted at teardown after training; trying once more:\n{r.stderr}")
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = torch.load(folder / "rank0.pt"), torch.load(folder / "rank1.pt")
    assert torch.equal(a, b)
    ck = torch.load(folder / "ddp.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2 and ck["done"]


# --------------------------------------------------------------------------- several optimisers (GANs)
class TwoPart(nn.Module):
    """Two linear maps trained by two optimisers: ``p`` fits y with ``q``'s help, ``q`` decays to 0."""

    def __init__(self):
        super().__init__()
        self.p, self.q = nn.Linear(4, 1), nn.Linear(4, 1)

    def forward(self, batch, phase):
        if phase == "p":
            return {"loss": ((self.p(batch["x"]) + self.q(batch["x"]) - batch["y"]) ** 2).mean()}
        return {"loss": (self.q(batch["x"]) ** 2).mean(), "extra": self.q.weight.abs().sum()}


def _phased(run_dir, steps=12, **kw):
    E.seed_everything(0)
    m = TwoPart()
    opts = {"p": lambda mod: torch.optim.Adam(mod.p.parameters(), 1e-2),
            "q": lambda mod: torch.optim.Adam(mod.q.parameters(), 1e-2)}
    return E.Trainer(m, opts, _data(), batch_size=16, steps=steps, run_dir=run_dir, name="gan", stage="g",
                     seed=0, checkpoint_every=5, log_every=4, device="cpu", progress=False, **kw)


def test_phases_step_each_optimizer_on_its_own_loss(tmp_path):
    """Each phase's loss moves only its optimiser's parameters, after the earlier phases' updates:
    the engine's first step equals the same two updates written out by hand."""
    tr = _phased(tmp_path, steps=1)
    E.seed_everything(0)
    ref = TwoPart()
    ref.load_state_dict(tr.raw_model.state_dict())
    batch = {k: v[torch.randint(64, (16,), generator=torch.Generator().manual_seed(0))] for k, v in _data().items()}
    op, oq = torch.optim.Adam(ref.p.parameters(), 1e-2), torch.optim.Adam(ref.q.parameters(), 1e-2)
    for opt, phase in ((op, "p"), (oq, "q")):
        ref.zero_grad(set_to_none=True)
        ref(batch, phase)["loss"].backward()   # phase p also puts gradients on q: they must not step q
        opt.step()
    hist = tr.fit()
    for k, v in ref.state_dict().items():
        assert torch.allclose(v, tr.raw_model.state_dict()[k], atol=1e-7), k
    assert {"loss_p", "loss_q", "extra", "steps_per_s"} <= set(hist[-1])


def test_phases_resume_exactly_with_every_optimizer_state(tmp_path):
    full = _phased(tmp_path / "a")
    full.fit()
    ck = torch.load(tmp_path / "a" / "gan.pt", weights_only=True)
    assert set(ck["optimizer"]) == {"p", "q"}
    killed = _phased(tmp_path / "b")
    killed.fit(until=8)   # last checkpoint at step 5
    torch.manual_seed(999)
    resumed = _phased(tmp_path / "b")
    resumed.fit()
    for (k, a), b in zip(full.raw_model.state_dict().items(), resumed.raw_model.state_dict().values()):
        assert torch.equal(a, b), k


def test_phases_nan_names_the_phase_loss(tmp_path):
    def step_fn(model, batch, step, phase):
        out = model(batch, phase)
        if phase == "q" and step == 7:
            out["loss"] = out["loss"] * float("nan")
        return out
    with pytest.raises(E.NonFiniteLossError, match="loss 'loss_q' became nan at step 7"):
        _phased(tmp_path, step_fn=step_fn).fit()
