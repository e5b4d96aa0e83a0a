"""`amodal complete` at data-set scale: masks/s and peak memory, end to end (read, complete, write),
for every method, on real-size files of 10k and 100k instances.

    .venv/bin/python benchmarks/bench_scale.py [--source ANN.json] [--instances 10000 100000]
        [--vae RUN_DIR] [--pcnet RUN_DIR] [--methods visible convex-hull fit transformer pcnet-m]
        [--threads 1 2] [--pythonpath DIR] [--keep DIR]

The files are made by ``scale_file.py`` (whole images of ``--source`` repeated; without it the
embedded data set at KITTI's 1242x375). Each run is the command line itself, in a fresh process
with ``OMP_NUM_THREADS`` set to each ``--threads`` (the learned methods then run one process per
thread); it prints the wall time, masks/s, the CPU seconds of the process and its workers, and
the peak memory: the largest sum over the process and its workers of their proportional set size
(PSS: pages they share, such as those a forked worker shares with its parent, counted once), and
the main process's peak RSS. ``--vae`` / ``--pcnet``: trained run folders for the learned methods
(``fit`` and ``transformer`` are Amodal-VAE's two frames; left out without ``--vae``).
``--pythonpath DIR`` runs the command line of another checkout of the project (e.g. the commit
before a change) for a before/after table on one machine. On a machine others use too, compare
ratios measured in one run, and run it with nothing else of yours running.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_file import repeat_images, synth_source  # noqa: E402

METHODS = {"visible": ["--method", "visible"], "convex-hull": ["--method", "convex-hull"],
           "transformer": ["--method", "amodal-vae", "--frame", "transformer"],
           "fit": ["--method", "amodal-vae", "--frame", "fit"], "pcnet-m": ["--method", "pcnet-m"]}


def _tree(pid: int) -> list:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def run(cmd: list, env: dict, cwd) -> dict:
    """Run ``cmd``; wall seconds, CPU seconds (it and its workers), peak PSS of the tree, peak RSS."""
    t0 = time.perf_counter()
    # in a folder of its own: ``python -m`` puts the working folder first on the path, before PYTHONPATH
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def poll():
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(_pss_kb(p) for p in _tree(proc.pid)))
            time.sleep(0.05)
    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    watcher.join()
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "pss_mb": peak[0] / 1024,
            "rss_mb": usage.ru_maxrss / 1024, "out": out.strip()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", default=None, help="a COCO-like file to repeat (default: the embedded data)")
    p.add_argument("--instances", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--vae", default=None, help="a trained Amodal-VAE run folder")
    p.add_argument("--pcnet", default=None, help="a trained PCNet-M run folder")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--pythonpath", default=None, help="run the command line of this checkout instead")
    p.add_argument("--keep", default=None, help="write the files and predictions here (default: a temporary folder)")
    ns = p.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    code = Path(ns.pythonpath or root)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(ns.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        source = json.loads(Path(ns.source).read_text()) if ns.source else synth_source(200, 0, work)
        imported = subprocess.run([sys.executable, "-c", "import amodal_lib; print(amodal_lib.__file__)"],
                                  env=dict(os.environ, PYTHONPATH=str(code)), cwd=work, capture_output=True,
                                  text=True).stdout.strip()
        if not imported.startswith(str(code)):
            raise SystemExit(f"the command line would run {imported}, not the checkout in {code}")
        print(f"code: {Path(imported).parent}; source: {ns.source or 'the embedded data at 1242x375'}; "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        print(f"{'method':12s} {'instances':>9s} {'threads':>7s} {'wall s':>8s} {'masks/s':>8s} {'CPU s':>8s} "
              f"{'peak PSS MB':>11s} {'peak RSS MB':>11s}", flush=True)
        for n in ns.instances:
            path = work / f"scale_{n}.json"
            path.write_text(json.dumps(repeat_images(source, n)))
            for method in ns.methods:
                args = list(METHODS[method])
                if method in ("fit", "transformer"):
                    if not ns.vae:
                        continue
                    args += ["--checkpoint", ns.vae]
                if method == "pcnet-m":
                    if not ns.pcnet:
                        continue
                    args += ["--checkpoint", ns.pcnet]
                for t in ns.threads:
                    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
                    cmd = [sys.executable, "-m", "amodal_lib", "complete", *args, "--annotations", str(path),
                           "--out", str(work / f"pred_{method}_{n}_t{t}.json")]
                    r = run(cmd, env, work)
                    print(f"{method:12s} {n:>9,d} {t:>7d} {r['wall']:>8.1f} {n / r['wall']:>8.0f} {r['cpu']:>8.1f} "
                          f"{r['pss_mb']:>11.0f} {r['rss_mb']:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
