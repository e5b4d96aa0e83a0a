#!/usr/bin/env bash
# Regenerate every table and figure of the study, or run the test suite.
#
#   ./run_all.sh                      # set up .venv if needed, run every notebook at the default profile
#   ./run_all.sh --profile smoke      # smoke | default | paper
#   ./run_all.sh --only 05            # only the notebooks whose name starts with 05 (upstream artifacts are
#                                     # built on demand by the notebooks themselves)
#   ./run_all.sh --seeds 0,1,2        # also the seed spread (notebook 14, left out otherwise): the learned
#                                     # rows of notebooks 05 and 11 retrained and rescored with each seed
#   ./run_all.sh --only 14 --seeds 0,1,2   # the seed spread alone (seed 0's models are the run's own)
#   ./run_all.sh --test               # set up .venv if needed, then pytest tests/ + nbval over notebooks/ (smoke)
#   ./run_all.sh --allow-dirty        # run even though tracked files have uncommitted changes
#
# Results come from one commit: a run (not --test) refuses a tree whose tracked files differ from
# HEAD, since results/manifest.json could not name the code that made them; --allow-dirty runs
# anyway (the manifest then records the commit as "<hash>+dirty").
#
# Executed notebooks go to results/notebooks/, figures to results/figures/, tables to results/tables/
# (for the smoke and paper profiles: under results/<profile>/); then every table, figure and executed
# notebook that no notebook of results/manifest.json wrote is removed, and results/README.md is written
# from the manifest.
set -euo pipefail
cd "$(dirname "$0")"

PROFILE="${AMODAL_PROFILE:-default}"
MODE=run
ONLY=""
ALLOW_DIRTY=0
SEEDS=""
OPTIONAL="14_seed_spread.ipynb"   # run only when asked: --seeds, or --only naming it
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    --test) MODE=test; shift ;;
    --allow-dirty) ALLOW_DIRTY=1; shift ;;
    --seeds) SEEDS="$2"; shift 2 ;;
    --seeds=*) SEEDS="${1#*=}"; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$PROFILE" in smoke|default|paper) ;; *) echo "run_all.sh: unknown profile '$PROFILE' (smoke, default, paper)" >&2; exit 2 ;; esac
if [ -n "$SEEDS" ] && ! [[ "$SEEDS" =~ ^[0-9]+(,[0-9]+)+$ ]]; then
  echo "run_all.sh: --seeds takes two or more comma-separated seeds, e.g. 0,1,2 (got '$SEEDS')" >&2; exit 2
fi

if [ "$MODE" = run ] && [ "$ALLOW_DIRTY" = 0 ]; then
  if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "run_all.sh: not a git checkout; the manifest will record the commit as unknown" >&2
  elif [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "run_all.sh: tracked files have uncommitted changes; results must come from one commit." >&2
    echo "run_all.sh: commit (or stash) them first, or run with --allow-dirty. Changed:" >&2
    git status --porcelain --untracked-files=no | sed 's/^/  /' >&2
    exit 2
  fi
fi

PY=.venv/bin/python
if [ ! -x "$PY" ] || ! "$PY" -c "import amodal_lib, papermill, nbval, torchvision, pycocotools, hypothesis" 2>/dev/null \
   || ! "$PY" -c "import cv2, ipywidgets, ipyevents, playwright" 2>/dev/null; then
  echo "== setting up .venv (python3 -m venv + pip install -e .[dev]) =="
  python3 -m venv .venv
  "$PY" -m pip install --upgrade --quiet pip
  "$PY" -m pip install --quiet -e ".[dev]"
fi
export MPLBACKEND=Agg PYTHONUNBUFFERED=1

if [ "$MODE" = test ]; then
  # nbval runs each notebook with its parameter defaults; the profile comes from the environment.
  # Test runs write into a scratch results folder so that they never overwrite results/.
  export AMODAL_PROFILE=smoke
  # A scratch folder made here is removed once every test passes (it holds ~140 MB of smoke-profile
  # models and outputs); on a failure it stays, for its logs. A folder given as AMODAL_RESULTS stays.
  scratch_made=""
  if [ -z "${AMODAL_RESULTS:-}" ]; then
    AMODAL_RESULTS="$(mktemp -d -t amodal-test-results.XXXXXX)"
    scratch_made="$AMODAL_RESULTS"
  fi
  export AMODAL_RESULTS
  # Two pytest processes side by side, one thread each: nbval over the notebooks (in order: later
  # ones reuse the models earlier ones train), and the unit tests, whose browser test runs notebook
  # 12 in JupyterLab with a scratch folder of its own.
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  echo "== pytest tests/ + nbval notebooks/ (profile smoke, scratch results in $AMODAL_RESULTS) =="
  UNIT_LOG="$AMODAL_RESULTS/unit-tests.log"
  mkdir -p "$AMODAL_RESULTS/unit"
  AMODAL_RESULTS="$AMODAL_RESULTS/unit" "$PY" -m pytest tests/ -p no:cacheprovider -q >"$UNIT_LOG" 2>&1 &
  unit=$!
  nb_rc=0
  "$PY" -m pytest notebooks/ --nbval-lax -p no:cacheprovider -q || nb_rc=$?
  unit_rc=0
  wait "$unit" || unit_rc=$?
  echo "== unit tests (tests/) =="
  cat "$UNIT_LOG"
  if [ "$nb_rc" != 0 ] || [ "$unit_rc" != 0 ]; then
    echo "run_all.sh --test: FAILED (notebooks: exit $nb_rc; unit tests: exit $unit_rc); outputs kept in $AMODAL_RESULTS" >&2
    exit 1
  fi
  [ -n "$scratch_made" ] && rm -rf "$scratch_made"
  echo "run_all.sh --test: all passed"
  exit 0
fi

export AMODAL_PROFILE="$PROFILE"
RESULTS="${AMODAL_RESULTS:-results}"  # AMODAL_RESULTS moves every output, as the notebooks' helper does
OUTDIR="$RESULTS/notebooks"
[ "$PROFILE" = default ] || OUTDIR="$RESULTS/$PROFILE/notebooks"
mkdir -p "$OUTDIR"
echo "== generating the embedded data set for profile $PROFILE (cached under data/) =="
"$PY" -c "from amodal_lib.nb import setup; setup('data', '$PROFILE').data()"
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  name=$(basename "$nb")
  [ -n "$ONLY" ] && [[ "$name" != "$ONLY"* ]] && continue
  extra=()
  if [ "$name" = "$OPTIONAL" ]; then
    [ -z "$SEEDS" ] && [[ "$ONLY" != 14* ]] && continue
    [ -n "$SEEDS" ] && extra=(-p seeds "$SEEDS")
  fi
  echo "== $name (profile $PROFILE) =="
  start=$(date +%s)
  if ! "$PY" -m papermill "$nb" "$OUTDIR/$name" -p profile "$PROFILE" ${extra[@]+"${extra[@]}"} --cwd notebooks \
       --progress-bar --log-level WARNING; then
    echo "run_all.sh: $name failed; the failing cell is marked in $OUTDIR/$name" >&2
    echo "run_all.sh: results of the notebooks before it are kept in $RESULTS/" >&2
    exit 1
  fi
  echo "   $name: $(( $(date +%s) - start )) s"
done
"$PY" -c "from amodal_lib.nb import prune_results; prune_results()"
"$PY" -m amodal_lib.report
echo "== done: see $RESULTS/README.md =="
