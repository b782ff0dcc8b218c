"""The package's one-way flow, checked on its import graph (ast only, nothing imported).

Layers, lowest first; a module may import only from its own layer or a lower
one, and no import cycle may exist anywhere (lazy imports inside functions
count too). ARCHITECTURE.md describes the same order.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "largeemb"

#: (layer, module prefixes), lowest first.
LAYERS = [
    ("base", ("largeemb.version", "largeemb.errors", "largeemb.config")),
    ("kernels", ("largeemb.kernels",)),
    ("io", ("largeemb.io",)),
    ("run", ("largeemb.run",)),
    ("passes", ("largeemb.passes",)),
    ("pipeline", ("largeemb.result", "largeemb.pipeline")),
    ("report", ("largeemb.report",)),
    ("series", ("largeemb.series",)),
    ("api", ("largeemb.api",)),
    ("cli", ("largeemb.cli", "largeemb.__main__", "largeemb")),
]


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
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
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
        used |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        assert not used & banned, f"{name} imports {used & banned}"


@pytest.mark.parametrize("cycle_free", [False, True])
def test_the_checks_can_fail(cycle_free):
    """The checker itself finds a planted cycle and a planted upward import."""
    edges = {"a": {"b"}, "b": set() if cycle_free else {"a"}}
    assert (find_cycle(edges) is None) == cycle_free
    assert layer_of("largeemb.kernels.knn") < layer_of("largeemb.passes.knn") < layer_of("largeemb.api")


def test_architecture_doc_names_every_layer():
    doc = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if prefix != "largeemb":
                assert f"`{prefix.removeprefix('largeemb.').replace('.', '/')}" in doc, prefix
