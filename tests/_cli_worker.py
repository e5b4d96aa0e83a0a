"""Runs ``amodal_lib.cli.main`` on command lines read from stdin, under a memory limit.

    python tests/_cli_worker.py LIMIT_BYTES

Each stdin line is a JSON list of arguments; each answer is one JSON line on stdout:
``{"rc": exit code, "err": stderr, "out": stdout}``. The address-space limit
(``RLIMIT_AS``) turns a runaway allocation (pycocotools decoding a NaN or 1e9 polygon
coordinate once asked for 17.6 GB) into a fast failure of this process instead of the
machine's OOM killer; one process serves many command lines, so the imports are paid once.
"""
import contextlib
import io
import json
import resource
import sys
import traceback


def main() -> None:
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from amodal_lib import cli

    proto = sys.stdout
    for line in sys.stdin:
        argv = json.loads(line)
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = cli.main(argv)
            except SystemExit as e:  # argparse
                rc = e.code if isinstance(e.code, int) else 1
            except BaseException:  # MemoryError and the like: what the test must see
                traceback.print_exc()
                rc = -1
        proto.write(json.dumps({"rc": rc, "err": err.getvalue(), "out": out.getvalue()}) + "\n")
        proto.flush()


if __name__ == "__main__":
    main()
