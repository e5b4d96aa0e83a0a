"""The package's shape, read from its source with ``ast`` (nothing is imported): the layers of
README's "Architecture" section, each importing only from its own layer and those below it; no
import cycle; no file over 500 lines; at most 12 loose modules at the top of the package; at most
30 imports of ``amodal_lib`` inside function bodies, each under a comment saying why it is deferred.

The checks are plain functions of a package folder, so that the last test can show each of them
failing on a small package built to break it."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "amodal_lib"

# The layers, lowest first, and the top-level modules and folders of each: a module may import
# from its own layer and the layers before it, never from a later one.
LAYERS = (
    ("base", ("__init__", "errors", "io", "paper", "profiles")),
    ("data", ("data",)),
    ("evaluation", ("metrics", "thresholds")),
    ("models", ("models",)),
    ("predict", ("predict",)),
    ("train", ("train",)),
    ("registry", ("registry",)),
    ("experiments", ("experiments", "viz")),
    ("top", ("nb", "report", "editor", "cli", "__main__")),
)
MAX_LINES = 500
MAX_LOOSE = 12
MAX_DEFERRED = 30


# --------------------------------------------------------------------------- reading the package
def modules(root: Path) -> dict:
    """{dotted name: path} of every module of the package in ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, path: Path, node, known: dict) -> list:
    """The package's modules an import statement of module ``name`` (file ``path``) reaches."""
    pkg = root = name.split(".")[0]
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names if a.name.split(".")[0] == root]
    else:
        if node.level:
            here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if base.split(".")[0] != pkg:
            return []
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for t in targets:
        while t not in known and "." in t:
            t = t.rsplit(".", 1)[0]
        if t in known and t != name:
            out.append(t)
    return out


@lru_cache(maxsize=None)
def imports(root: Path) -> tuple[dict, list]:
    """({module: {imported module: first line}}, [(module, line, statement) of every import of the
    package inside a function body])."""
    known = modules(root)
    edges: dict = {m: {} for m in known}
    deferred = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        in_function = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                in_function.update(id(n) for n in ast.walk(fn) if n is not fn)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = _resolve(name, path, node, known)
            for t in targets:
                edges[name].setdefault(t, node.lineno)
            if targets and id(node) in in_function:
                deferred.append((name, node.lineno, ast.unparse(node)))
    return edges, deferred


def layer_of(name: str) -> int:
    """The index in :data:`LAYERS` of a module (by its top-level module or folder)."""
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for k, (_, members) in enumerate(LAYERS):
        if top in members:
            return k
    raise KeyError(name)


# --------------------------------------------------------------------------- the checks
def unplaced(root: Path) -> list:
    """Modules in no layer (a new top-level module or folder must be given one)."""
    out = []
    for name in modules(root):
        try:
            layer_of(name)
        except KeyError:
            out.append(name)
    return out


def cycles(root: Path) -> list:
    """The import cycles: every strongly connected group of two or more modules (Tarjan)."""
    edges, _ = imports(root)
    index, low, stack, on, groups, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))
    for v in edges:
        if v not in index:
            visit(v)
    return groups


def upward(root: Path) -> list:
    """Imports from a lower layer to a higher one: "module:line -> module (layer -> layer)"."""
    edges, _ = imports(root)
    out = []
    for a, targets in edges.items():
        for b, line in targets.items():
            if layer_of(b) > layer_of(a):
                out.append(f"{a}:{line} -> {b} ({LAYERS[layer_of(a)][0]} -> {LAYERS[layer_of(b)][0]})")
    return out


def long_files(root: Path, limit: int = MAX_LINES) -> list:
    return [f"{p.relative_to(root.parent)}: {n} lines" for p in sorted(root.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > limit]


def loose_modules(root: Path) -> list:
    """The modules at the top of the package (not in a folder), ``__init__`` aside."""
    return sorted(p.stem for p in root.glob("*.py") if p.name != "__init__.py")


def unexplained(root: Path) -> list:
    """Imports of the package inside function bodies without a comment saying "deferred" on
    their line or in the comment and import lines just above them."""
    _, deferred = imports(root)
    paths = modules(root)
    out = []
    for name, line, stmt in deferred:
        lines = paths[name].read_text().splitlines()
        k, said = line - 1, "deferred" in lines[line - 1].lower()
        while not said and k > 0 and lines[k - 1].strip().startswith(("#", "from ", "import ")):
            k -= 1
            said = lines[k].strip().startswith("#") and "deferred" in lines[k].lower()
        if not said:
            out.append(f"{name}:{line}: {stmt}")
    return out


# --------------------------------------------------------------------------- amodal_lib
def test_every_module_has_a_layer():
    assert unplaced(PACKAGE) == []


def test_no_import_cycle():
    assert cycles(PACKAGE) == []


def test_no_import_goes_up_a_layer():
    assert upward(PACKAGE) == []


def test_no_file_over_500_lines():
    assert long_files(PACKAGE) == []


def test_few_loose_modules():
    loose = loose_modules(PACKAGE)
    assert len(loose) <= MAX_LOOSE, loose


def test_few_deferred_imports_each_explained():
    _, deferred = imports(PACKAGE)
    assert len(deferred) <= MAX_DEFERRED, "\n".join(f"{m}:{n}: {s}" for m, n, s in deferred)
    assert unexplained(PACKAGE) == []


# --------------------------------------------------------------------------- the checks can fail
def _package(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        p = root / "amodal_lib" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "amodal_lib"


def test_each_check_fails_on_a_package_built_to_break_it(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "errors.py": "from .data import records\n",                               # base -> data: up
        "data/__init__.py": "",
        "data/records.py": "from ..data import masks\n",
        "data/masks.py": "from . import records\n",                               # a cycle with records
        "models/__init__.py": "",
        "models/net.py": "def f():\n    from ..train import engine\n" + "x = 1\n" * 500,   # up, unexplained, long
        "train/__init__.py": "",
        "train/engine.py": "def g():\n    # deferred on purpose: heavy\n    from ..models import net\n",
        "stray.py": "",                                                           # in no layer
    })
    assert sorted(cycles(pkg)) == [["amodal_lib.data.masks", "amodal_lib.data.records"],
                                   ["amodal_lib.models.net", "amodal_lib.train.engine"]]
    assert sorted(upward(pkg)) == ["amodal_lib.errors:1 -> amodal_lib.data.records (base -> data)",
                                   "amodal_lib.models.net:2 -> amodal_lib.train.engine (models -> train)"]
    assert long_files(pkg) == ["amodal_lib/models/net.py: 502 lines"]
    assert unexplained(pkg) == ["amodal_lib.models.net:2: from ..train import engine"]
    assert len(imports(pkg)[1]) == 2 and unplaced(pkg) == ["amodal_lib.stray"]
    assert loose_modules(pkg) == ["errors", "stray"]
    with pytest.raises(KeyError):
        layer_of("amodal_lib.stray")
