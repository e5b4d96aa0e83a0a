"""The command line as a reader meets it: help for every option, ``--version``, one vocabulary
(the replaced spellings still parse, hidden), and progress that stays readable in a log."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import _fixtures as fx
from amodal_lib import __version__, cli
from amodal_lib.cli import parser as P
from amodal_lib.cli.progress import LogProgress

REPO = Path(__file__).resolve().parents[1]


def _commands():
    p = P.build()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return p, sub.choices


def _options(parser):
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_option_of_every_command_has_help():
    top, commands = _commands()
    assert set(commands) == {"synth", "train", "complete", "evaluate", "segment", "render", "edit"}
    missing = [f"{name} {a.option_strings[0]}" for name, sub in [("amodal", top), *commands.items()]
               for a in _options(sub) if not (a.help and a.help != argparse.SUPPRESS and len(a.help) > 10)]
    assert missing == []
    for name, sub in commands.items():   # and the help the user reads lists them, with nothing unfinished
        text = sub.format_help()
        assert all(a.option_strings[0] in text for a in _options(sub)), name
        assert "%(" not in text and "None" not in text, name


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"amodal {__version__}"
    out = subprocess.run([sys.executable, "-m", "amodal_lib", "--version"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"amodal {__version__}"


def test_one_name_per_thing_across_the_commands():
    _, commands = _commands()
    flags = {name: {a.option_strings[0] for a in _options(sub)} for name, sub in commands.items()}
    assert "--method" not in set().union(*flags.values())                     # the model is --model everywhere
    assert {"train", "segment", "complete"} <= {n for n, f in flags.items() if "--model" in f}
    assert {n for n, f in flags.items() if "--images" in f} == {"train", "segment"}   # always a folder
    assert all(not (f & {"--vae", "--background", "--instance", "--models"}) for f in flags.values())
    for name, sub in commands.items():   # the same option says the same thing in every command
        for a in _options(sub):
            if a.option_strings[0] in ("--device", "--debug"):
                assert a.help == P.HELP[a.option_strings[0][2:]], (name, a.option_strings[0])


@pytest.mark.parametrize("old, new", [
    (["complete", "--method", "visible", "--annotations", "a.json", "--out", "p.json"],
     ["complete", "--model", "visible", "--annotations", "a.json", "--out", "p.json"]),
    (["synth", "--out", "d", "--images", "3"], ["synth", "--out", "d", "--num-images", "3"]),
    (["train", "--model", "resnet-psp", "--annotations", "a.json", "--out", "r", "--weights", "w.pth"],
     ["train", "--model", "resnet-psp", "--annotations", "a.json", "--out", "r", "--backbone-weights", "w.pth"]),
    (["edit", "--image", "i.png", "--annotations", "a.json", "--remove", "1", "--out", "o.png", "--models", "m",
      "--vae", "v", "--background", "b", "--instance", "i"],
     ["edit", "--image", "i.png", "--annotations", "a.json", "--remove", "1", "--out", "o.png", "--runs", "m",
      "--vae-checkpoint", "v", "--background-checkpoint", "b", "--instance-checkpoint", "i"]),
])
def test_the_replaced_spellings_still_parse_but_are_not_shown(old, new):
    p, commands = _commands()
    assert p.parse_args(old) == p.parse_args(new)
    shown = commands[old[0]].format_help() + commands[old[0]].format_usage()
    for flag in set(old) - set(new):
        if flag.startswith("--"):
            assert flag + " " not in shown and flag + "\n" not in shown, flag


def test_a_required_option_given_by_its_old_name_is_enough(tmp_path, capsys):
    ann = fx.write_kins2020(tmp_path / "k.json")
    assert cli.main(["complete", "--method", "visible", "--annotations", str(ann), "--out", str(tmp_path / "p")]) == 0
    with pytest.raises(SystemExit) as e:                       # and missing under both, argparse names the new one
        cli.main(["complete", "--annotations", str(ann), "--out", str(tmp_path / "p")])
    assert e.value.code == 2 and "required: --model" in capsys.readouterr().err


# --------------------------------------------------------------------------- progress in a log
class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _lines(text: str) -> list:
    return text.replace("\r", "\n").splitlines()


def test_a_bar_redrawn_ten_times_a_second_for_an_hour_logs_a_few_dozen_lines(tmp_path):
    from tqdm import tqdm
    clock, out = Clock(), open(tmp_path / "log", "w")
    log = LogProgress(out, clock=clock)
    print("training amodal-vae", file=log)
    bar = tqdm(total=36_000, desc="stage 1", file=log, mininterval=0, leave=False)
    for _ in range(36_000):
        clock.t += 0.1
        bar.update(1)
    bar.close()
    print("stage 1 kept step 36000", file=log)
    log.close()
    out.close()
    text = (tmp_path / "log").read_text()
    lines = _lines(text)
    assert "\r" not in text and 20 <= len(lines) <= 100, len(lines)
    assert lines[0] == "training amodal-vae" and lines[-1] == "stage 1 kept step 36000"
    assert "36000/36000" in lines[-2]                           # where the bar ended is shown
    assert all(a != b for a, b in zip(lines, lines[1:]))         # no redraw shown twice


def test_lines_pass_through_and_a_short_bar_is_one_or_two_lines():
    import io
    clock, out = Clock(), io.StringIO()
    log = LogProgress(out, clock=clock)
    log.write("a line\nhalf ")
    log.write("a line\n")
    for k in range(5):                                          # redraws within a second
        clock.t += 0.2
        log.write(f"\rbar {k}/4")
        log.flush()
    log.write("\n")                                             # a bar left on screen at its end
    log.write("after\n")
    log.close()
    assert out.getvalue() == "a line\nhalf a line\nbar 0/4\nbar 4/4\nafter\n"


def test_piped_commands_log_a_few_lines(tmp_path):
    """``amodal complete`` on a few hundred instances and a short ``amodal train``, their output
    piped: no carriage return, a bounded number of lines."""
    ann = fx.write_kins2020(tmp_path / "k.json", n_images=80)   # 240 instances
    run = [sys.executable, "-m", "amodal_lib"]
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    train = subprocess.run(run + ["train", "--model", "pcnet-m", "--annotations", str(ann), "--out", str(tmp_path / "pc"),
                                  "--profile", "smoke", "--steps", "40"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=600)
    assert train.returncode == 0, train.stdout[-2000:]
    complete = subprocess.run(run + ["complete", "--model", "pcnet-m", "--checkpoint", str(tmp_path / "pc"),
                                     "--annotations", str(ann), "--out", str(tmp_path / "p.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=600)
    assert complete.returncode == 0, complete.stdout[-2000:]
    for out, limit in ((train.stdout, 200), (complete.stdout, 25)):
        assert "\r" not in out and len(_lines(out)) <= limit, out
    assert "wrote 240 predictions" in complete.stdout
