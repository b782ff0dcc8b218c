"""The package's one-way flow, checked on its import graph (ast only, nothing imported).

Layers, lowest first; a module may import only from its own layer or a lower
one, and no import cycle may exist anywhere (lazy imports inside functions
count too). ARCHITECTURE.md describes the same order. Also checked: modules
stay small, kernels keep no state between calls, and the docs name every module.
"""

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "largeemb"

#: (layer, module prefixes), lowest first.
LAYERS = [
    ("base", ("largeemb.version", "largeemb.errors", "largeemb.config")),
    ("kernels", ("largeemb.kernels",)),
    ("io", ("largeemb.io",)),
    ("run", ("largeemb.run",)),
    ("passes", ("largeemb.passes",)),
    ("metrics", ("largeemb.metrics",)),
    ("pipeline", ("largeemb.result", "largeemb.pipeline")),
    ("report", ("largeemb.report",)),
    ("series", ("largeemb.series",)),
    ("api", ("largeemb.api", "largeemb.batch", "largeemb.by_class")),
    (
        "cli",
        (
            "largeemb.cli", "largeemb.cli_options", "largeemb.cli_process", "largeemb.cli_series", "largeemb.cli_runs",
            "largeemb.cli_reference", "largeemb.cli_worst", "largeemb.__main__", "largeemb",
        ),
    ),
]
#: Lines a module may have: past this, a module holds more than one concept (split it).
MAX_LINES = 400


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """Modules of this package that ``name`` imports (at top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def layer_of(name: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS and ARCHITECTURE.md"
    return best[0]


def find_cycle(edges: dict[str, set[str]]):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(graph()) is None


def test_imports_follow_the_layer_order():
    wrong = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(name)
    ]
    assert not wrong, "\n".join(wrong)


def test_kernels_open_no_files_and_build_no_graphs():
    """The numeric core takes arrays: no dask, zarr, fsspec or file-system modules."""
    banned = {"dask", "distributed", "zarr", "fsspec", "os", "shutil"}
    for name, path in modules().items():
        if layer_of(name) != 1:
            continue
        tree = ast.parse(path.read_text())
        used = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        used |= {
            (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level
        }
        assert not used & banned, f"{name} imports {used & banned}"


@pytest.mark.parametrize("cycle_free", [False, True])
def test_the_checks_can_fail(cycle_free):
    """The checker itself finds a planted cycle and a planted upward import."""
    edges = {"a": {"b"}, "b": set() if cycle_free else {"a"}}
    assert (find_cycle(edges) is None) == cycle_free
    assert layer_of("largeemb.kernels.knn") < layer_of("largeemb.passes.knn") < layer_of("largeemb.api")


# -- the metrics: named in their own modules only ------------------------------------
#
# The stage order (pipeline.py) and the public entries (api.py) run what the
# metrics declare (largeemb.metrics.Needs) and loop over the registry: no metric's
# name or key may appear there, as an identifier (or part of one: fd_inf) or in a
# string (docstrings aside). The one exemption is the word "precision" where it
# means the tiles' arithmetic (EvaluateConfig.precision, PassContext.precision,
# resolve_precision, screening["precision"]), not the metric.

#: Files that must not name a metric.
METRIC_BLIND = ("pipeline.py", "api.py")
#: Reads of the tile-precision option: an attribute of these objects, and its resolver.
PRECISION_OWNERS, PRECISION_FUNCTIONS = {"config", "ctx"}, {"resolve_precision"}


def metric_words() -> set[str]:
    """Every registered metric's name and keys (this check imports the registry)."""
    from largeemb.metrics import REGISTRY

    return {word for metric in REGISTRY for word in (metric.NAME, *metric.KEYS)}


def _parts(text: str) -> list[list[str]]:
    """Identifier-like words of ``text``, each split at underscores, lower case."""
    return [word.split("_") for word in re.findall(r"[a-z0-9_]+", text.lower()) if word.strip("_")]


def _names(parts: list[str], words: set[str]) -> set[str]:
    """The metric words that ``parts`` holds as consecutive parts (fd_inf holds fd; fd_infinity holds both)."""
    found = set()
    for word in words:
        want = word.split("_")
        if any(parts[i : i + len(want)] == want for i in range(len(parts) - len(want) + 1)):
            found.add(word)
    return found


def _tile_precision(node) -> bool:
    """``config.precision``, ``ctx.precision``, or ``resolve_precision(...)``."""
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id in PRECISION_FUNCTIONS
    return (isinstance(node, ast.Attribute) and node.attr == "precision"
            and isinstance(node.value, ast.Name) and node.value.id in PRECISION_OWNERS)


def metric_names_in(source: str, words: set[str]) -> list[str]:
    """Where ``source`` names a metric: 'line N: word (in what)'."""
    tree = ast.parse(source)
    docstrings, exempt = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                docstrings.add(id(first.value))
        if isinstance(node, ast.Dict):  # screening["precision"] = ctx.precision
            exempt.update(
                id(key) for key, value in zip(node.keys, node.values) if key is not None and _tile_precision(value)
            )
    found = []

    def check(node, text, what, allowed=frozenset()):
        for parts in _parts(text):
            for word in sorted(_names(parts, words) - allowed):
                found.append(f"line {getattr(node, 'lineno', '?')}: {word} (in {what} {text!r})")

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | exempt:
            check(node, node.value, "a string")
        elif isinstance(node, ast.Name):
            check(node, node.id, "a name", {"precision"} if node.id in PRECISION_FUNCTIONS else frozenset())
        elif isinstance(node, ast.Attribute):
            check(node, node.attr, "an attribute", {"precision"} if _tile_precision(node) else frozenset())
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            check(node, node.name, "a definition")
        elif isinstance(node, ast.arg):
            check(node, node.arg, "an argument")
        elif isinstance(node, ast.keyword) and node.arg:  # PassContext(precision=resolve_precision(...))
            check(node, node.arg, "a keyword", {"precision"} if _tile_precision(node.value) else frozenset())
        elif isinstance(node, ast.alias):
            name = node.asname or node.name
            check(node, name, "an import", {"precision"} if name in PRECISION_FUNCTIONS else frozenset())
    return found


@pytest.mark.parametrize("name", METRIC_BLIND)
def test_the_stage_order_and_the_entries_name_no_metric(name):
    found = metric_names_in((PACKAGE / name).read_text(), metric_words())
    assert not found, f"{name} names metrics (declare what they need in largeemb/metrics instead):\n" + "\n".join(found)


def test_the_metric_name_check_can_fail():
    """Planted metric names are found in every form; the tile precision and docstrings are not."""
    words = {"fd", "fd_infinity", "precision", "p_precision", "kid", "kid_subsets"}
    planted = (
        'def f(config, ctx):\n'
        '    """Mentions fd and kid in a docstring: allowed."""\n'
        '    shells = fd_inf\n'
        '    if "fd_infinity" in config.companions:\n'
        '        passes.kid = config.kid_subsets\n'
        '    log(f"FD∞ of {dim}")\n'
        '    screening = {"precision": ctx.precision, "p_precision": 1}\n'
        '    return h(precision=resolve_precision(config.precision)), g(precision=1)\n'
    )
    found = metric_names_in(planted, words)
    lines = {line.split(":")[0] for line in found}
    assert lines == {"line 3", "line 4", "line 5", "line 6", "line 7", "line 8"}, found
    assert not any("line 2" in f or "ctx.precision" in f or "resolve_precision" in f for f in found)
    assert any("precision (in a keyword" in f for f in found) and any("p_precision (in a string" in f for f in found)
    assert metric_names_in('def f(ctx):\n    return ctx.precision, resolve_precision("auto")\n', words) == []


def test_every_metric_module_is_registered_and_declares_itself():
    from largeemb import metrics
    from largeemb.config import COMPANIONS, EvaluateConfig

    modules = {p.stem for p in (PACKAGE / "metrics").glob("*.py")} - {"__init__", "base"}
    assert {m.__name__.rpartition(".")[2] for m in metrics.REGISTRY} == modules
    for metric in metrics.REGISTRY:
        assert isinstance(metric.NAME, str) and metric.KEYS and all(isinstance(key, str) for key in metric.KEYS), metric
        assert all(callable(getattr(metric, f)) for f in ("chosen", "needs", "value")), metric
    # The names --companions chooses are the companions' own: each chosen alone by its name.
    for name in COMPANIONS:
        alone = EvaluateConfig(companions=(name,))
        assert [m.NAME for m in metrics.chosen(alone) if not m.chosen(EvaluateConfig(companions=()))] == [name]


def test_architecture_doc_names_every_layer():
    doc = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    for _layer, prefixes in LAYERS:
        for prefix in prefixes:
            if prefix != "largeemb":
                assert f"`{prefix.removeprefix('largeemb.').replace('.', '/')}" in doc, prefix


def test_every_module_is_at_most_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split each at its concepts): {long}"


#: Method calls that change a container or an array in place.
MUTATING_METHODS = {
    "append", "extend", "insert", "update", "setdefault", "add", "discard", "remove", "pop", "popitem", "clear",
    "appendleft", "extendleft", "sort", "reverse", "fill", "put", "resize", "move_to_end", "itemset",
}


def _locals(func) -> set[str]:
    """Names a function binds itself (parameters and assignments, nested scopes included)."""
    args = func.args
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    return names | {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _target_name(node):
    """The name at the root of ``x``, ``x.attr``, ``x[i]`` (chains included)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def state_kept(source: str) -> list[str]:
    """What in a module keeps state between calls: ``global`` statements, ``threading.local()``
    or a cache decorator at module level, and any change to a module-level name's contents
    (item or attribute assignment, augmented assignment, mutating method calls)."""
    tree = ast.parse(source)
    module_names = {
        t.id for node in tree.body
        for t in (node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)])
        if isinstance(t, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found.append(f"line {node.lineno}: global {', '.join(node.names)}")
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("threading.local", "local"):
            found.append(f"line {node.lineno}: threading.local()")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                if ast.unparse(deco).split("(")[0].rsplit(".", 1)[-1] in ("lru_cache", "cache"):
                    found.append(f"line {node.lineno}: a cache on {node.name}")

    def changes(scope, own: set[str]):
        for node in ast.walk(scope):
            targets = []
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                for t in node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]:
                    if isinstance(t, (ast.Attribute, ast.Subscript)) or isinstance(node, ast.AugAssign):
                        targets.append(t)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in MUTATING_METHODS):
                targets.append(node.func.value)
            for t in targets:
                name = _target_name(t)
                if name in module_names and name not in own:
                    found.append(f"line {node.lineno}: changes module-level {name}")

    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    for func in functions:
        if isinstance(func, ast.Lambda):
            continue
        changes(func, _locals(func))
    for node in tree.body:  # code run at import, outside any function
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            changes(node, set())
    return sorted(set(found))


def test_kernels_keep_no_state_between_calls():
    """The numeric core is arrays in, arrays out: no module or thread state (what a task must keep,
    e.g. the screened tiles' gather buffers, lives on an object the task holds)."""
    kept = {name: state_kept(path.read_text()) for name, path in modules().items() if layer_of(name) == 1}
    assert not {name: found for name, found in kept.items() if found}


def test_the_state_check_can_fail():
    """The state check finds each kind of kept state it looks for, and nothing in stateless code."""
    planted = """
import threading
import functools
_gather = threading.local()
_counts = {}
_seen = []
LIMIT = 3

def count(x):
    global LIMIT
    _gather.buffers = x
    _counts["calls"] = x
    _seen.append(x)

@functools.lru_cache(maxsize=1)
def cached():
    return 1
"""
    found = " ".join(state_kept(planted))
    for what in ("threading.local()", "global LIMIT", "changes module-level _gather", "changes module-level _counts",
                 "changes module-level _seen", "a cache on cached"):
        assert what in found, what
    clean = """
SIZES = (1, 2)

def f(values):
    out = []
    out.append(values)
    counts = {}
    counts["a"] = 1
    values[0] = 2
    return out
"""
    assert state_kept(clean) == []


def _modules_of(package: pathlib.Path) -> set[str]:
    return {p.stem for p in package.glob("*.py") if p.stem != "__init__"}


def test_each_package_docstring_names_every_module():
    for package in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        missing = sorted(m for m in _modules_of(package) if not re.search(rf"\b{m}\b", doc))
        assert not missing, f"largeemb/{package.name}/__init__.py's docstring does not name {missing}"


def test_architecture_doc_names_every_module():
    doc = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    named = {
        f"{p.parent.name}/{p.name}" if p.parent != PACKAGE else p.name for p in PACKAGE.rglob("*.py")
        if not p.stem.startswith("__")
    }
    missing = sorted(path for path in named if path.rsplit("/", 1)[-1] not in doc)
    assert not missing, f"ARCHITECTURE.md's tree does not name {missing}"
