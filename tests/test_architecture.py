"""The package's shape, checked from source with `ast`: data walks one way, no import cycles, no private names
imported across modules, no other package's private modules or attributes, no oversized modules or functions,
and in-function imports only where they are marked.

Each check fails on a small synthetic package too (the `*_detects_*` tests), so none of them can pass vacuously.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ecglang"
BENCHMARKS = PACKAGE.parent / "benchmarks"
SCRIPTS = PACKAGE.parent / "scripts"

# The data walk, bottom to top: a module may import its own folder and folders with a lower rank only.
# docs/ARCHITECTURE.md shows the same table.
LAYERS = [
    "errors",
    "core",
    "record",
    "signal",
    "beats",
    "text",
    "data",
    "knowledge",
    "encoders",
    "embeddings",
    "scores",
    "report",
    "evaluation",
    "training",
    "cli",
]
RANK = {name: i for i, name in enumerate(LAYERS)}
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 150


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. "ecglang.scores.classifier"
    target: str  # imported module, e.g. "ecglang.encoders.modeling"
    names: tuple[str, ...]  # names taken from it (empty for `import x`)
    line: int
    in_function: bool
    marked: bool  # a comment on the line or the line above says why it is inside a function


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_package(name: str, root: Path) -> bool:
    return (root.parent / Path(*name.split(".")) / "__init__.py").is_file()


def imports_of(path: Path, root: Path, prefix: str = "ecglang") -> Iterator[Import]:
    """Every import of the package's own modules in `path`, with where it sits."""
    source = module_name(path, root) if path.is_relative_to(root) else path.stem
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(n) for f in functions for n in ast.walk(f) if n is not f}

    # A block: consecutive import statements of one body (a parenthesised import spans several lines).
    blocks = {}
    for parent in ast.walk(tree):
        for field in ("body", "orelse", "finalbody", "handlers"):
            run: list[ast.stmt] = []
            body = getattr(parent, field, [])
            for stmt in [*(body if isinstance(body, list) else []), None]:  # a lambda's body is an expression
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    run.append(stmt)
                    continue
                for member in run:
                    blocks[id(member)] = (run[0].lineno, run[-1].end_lineno or run[-1].lineno)
                run = []

    def marked(node: ast.stmt) -> bool:
        """A comment on the import, on another import of the same block, or on the line just above the block."""
        first, last = blocks.get(id(node), (node.lineno, node.end_lineno or node.lineno))
        block = lines[max(0, first - 2) : last]
        return any("#" in line for line in block)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == prefix or alias.name.startswith(prefix + "."):
                    yield Import(source, alias.name, (), node.lineno, id(node) in inside, marked(node))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not (node.module == prefix or node.module.startswith(prefix + ".")):
                continue
            names = tuple(a.name for a in node.names)
            for name in names:  # `from ecglang.x import submodule` depends on the submodule
                if (
                    _is_package(node.module, root)
                    and (root.parent / Path(*node.module.split("."), f"{name}.py")).is_file()
                ):
                    yield Import(source, f"{node.module}.{name}", (), node.lineno, id(node) in inside, marked(node))
                    names = tuple(n for n in names if n != name)
            yield Import(source, node.module, names, node.lineno, id(node) in inside, marked(node))


def modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module_name(p, root): set() for p in modules(root)}
    for p in modules(root):
        for imp in imports_of(p, root, root.name):
            if imp.target in graph and imp.target != imp.source:
                graph[imp.source].add(imp.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan). Package `__init__` files that re-export
    their own submodules are not cycles of logic, so an edge from a package to its own submodule is ignored."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def edges(v: str) -> set[str]:
        return {w for w in graph[v] if not w.startswith(v + ".")}

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def private_imports(paths: list[Path], root: Path) -> list[str]:
    """`from ecglang.x import _name` anywhere but in the module's own package `__init__`."""
    bad = []
    for p in paths:
        for imp in imports_of(p, root, root.name):
            for name in imp.names:
                if name.startswith("_") and not name.startswith("__"):
                    bad.append(f"{p.name}:{imp.line} imports {name} from {imp.target}")
    return bad


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside a type annotation (typeshed names some argparse types only privately)."""
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            roots.append(node.returns)
            roots += [a.annotation for a in (*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs)]
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for root in roots if root is not None for n in ast.walk(root)}


def private_module_uses(paths: list[Path]) -> list[str]:
    """Imports of private modules (`wfdb.io._signal`, any package's) and `module._name` through an imported
    module, outside type annotations: another package's private parts can change without notice."""
    bad = []
    for p in paths:
        tree = ast.parse(p.read_text(encoding="utf-8"))
        private = lambda dotted: any(x.startswith("_") and not x.startswith("__") for x in dotted.split("."))  # noqa: E731
        imported = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    imported[alias.asname or alias.name.split(".")[0]] = alias.name
                    if private(alias.name):
                        bad.append(f"{p.name}:{node.lineno} imports the private module {alias.name}")
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level and private(node.module):
                bad.append(f"{p.name}:{node.lineno} imports from the private module {node.module}")
        in_annotation = _annotation_nodes(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in imported
                and private(node.attr)
                and id(node) not in in_annotation
            ):
                bad.append(f"{p.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return bad


def layer_of(module: str) -> str | None:
    """The folder (stage) of a module; None for the package's public face (`ecglang`, `ecglang.__main__`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else None


def upward_imports(root: Path) -> list[str]:
    bad = []
    for p in modules(root):
        for imp in imports_of(p, root, root.name):
            src, dst = layer_of(imp.source), layer_of(imp.target)
            if src is None or dst is None or src == dst:
                continue  # the package's public face may import any stage
            if src not in RANK or dst not in RANK:
                bad.append(f"{imp.source} -> {imp.target}: folder not in the layer table")
            elif RANK[dst] > RANK[src]:
                bad.append(f"{imp.source}:{imp.line} imports {imp.target} (upward: {src} -> {dst})")
    return bad


def may_import(doc: Path) -> dict[str, set[str]]:
    """Each folder's "may import" list in the layer table of `doc` (docs/ARCHITECTURE.md), closed over the lists
    it names ("…": every folder above it in the table; "everything": all)."""
    order: list[str] = []
    allowed: dict[str, set[str]] = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        folder = re.sub(r"/$|\.py$", "", cells[1].strip("`")) if line.startswith("| ") and len(cells) > 2 else ""
        if folder not in RANK or folder in allowed:
            continue
        listed = cells[-1]
        names = {n.strip() for n in listed.replace("…", "").split(",")} - {"", "–"}
        reach = set(order) if listed == "everything" or "…" in listed else set()
        for name in names - {"everything"}:
            reach |= {name, *allowed.get(name, set())}
        order.append(folder)
        allowed[folder] = reach
    return allowed


def imports_outside_their_lists(root: Path, allowed: dict[str, set[str]]) -> list[str]:
    bad = []
    for p in modules(root):
        for imp in imports_of(p, root, root.name):
            src, dst = layer_of(imp.source), layer_of(imp.target)
            if src is not None and dst is not None and src != dst and dst not in allowed.get(src, set()):
                bad.append(
                    f"{imp.source}:{imp.line} imports {imp.target} ({src} may import {sorted(allowed.get(src, []))})"
                )
    return bad


def unmarked_function_imports(root: Path) -> list[str]:
    return [
        f"{imp.source}:{imp.line} imports {imp.target} inside a function without a comment saying why"
        for p in modules(root)
        for imp in imports_of(p, root, root.name)
        if imp.in_function and not imp.marked
    ]


def oversized(root: Path) -> list[str]:
    bad = []
    for p in modules(root):
        text = p.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n > MAX_MODULE_LINES:
            bad.append(f"{module_name(p, root)}: {n} lines (limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    bad.append(f"{module_name(p, root)}.{node.name}: {length} lines (limit {MAX_FUNCTION_LINES})")
    return bad


# ------------------------------------------------------------------------------------------ the real package
def test_no_import_cycles() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_no_private_names_imported_across_modules() -> None:
    paths = modules(PACKAGE) + sorted(BENCHMARKS.glob("*.py")) + sorted(SCRIPTS.glob("*.py"))
    assert private_imports(paths, PACKAGE) == []


def test_no_private_modules_or_module_privates_used() -> None:
    paths = modules(PACKAGE) + sorted(BENCHMARKS.glob("*.py")) + sorted(SCRIPTS.glob("*.py"))
    assert private_module_uses(paths) == []


def test_imports_only_go_down_the_data_walk() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders <= set(LAYERS), f"folders missing from the layer table: {sorted(folders - set(LAYERS))}"
    assert upward_imports(PACKAGE) == []


def test_imports_keep_to_each_folders_list_in_the_architecture_doc() -> None:
    allowed = may_import(PACKAGE.parent / "docs" / "ARCHITECTURE.md")
    assert set(allowed) == set(LAYERS), f"folders missing from docs/ARCHITECTURE.md: {set(LAYERS) - set(allowed)}"
    assert imports_outside_their_lists(PACKAGE, allowed) == []


def test_in_function_imports_say_why() -> None:
    assert unmarked_function_imports(PACKAGE) == []


def test_no_oversized_modules_or_functions() -> None:
    assert oversized(PACKAGE) == []


# ------------------------------------------------------------------------------------------ the checks can fail
@pytest.fixture
def toy(tmp_path: Path) -> Path:
    root = tmp_path / "toy"
    (root / "record").mkdir(parents=True)
    (root / "scores").mkdir()
    for init in (root / "__init__.py", root / "record" / "__init__.py", root / "scores" / "__init__.py"):
        init.write_text("")
    return root


def test_cycle_check_detects_a_cycle(toy: Path) -> None:
    (toy / "record" / "a.py").write_text("from toy.scores.b import g\n\ndef f():\n    return 1\n")
    (toy / "scores" / "b.py").write_text("def g():\n    from toy.record.a import f  # lazy\n    return f()\n")
    assert cycles(import_graph(toy)) == [["toy.record.a", "toy.scores.b"]]


def test_private_check_detects_a_private_import(toy: Path) -> None:
    (toy / "record" / "a.py").write_text("def _helper():\n    return 1\n")
    (toy / "scores" / "b.py").write_text("from toy.record.a import _helper\n")
    assert private_imports(modules(toy), toy) == ["b.py:1 imports _helper from toy.record.a"]


def test_private_module_check_detects_private_modules_and_attributes(toy: Path) -> None:
    (toy / "record" / "a.py").write_text(
        "import argparse\nimport numpy as np\nfrom wfdb.io._signal import BYTES_PER_SAMPLE\n\n"
        "def f(sub: argparse._SubParsersAction) -> None:\n    return np._private_helper(sub)\n"
    )
    assert private_module_uses([toy / "record" / "a.py"]) == [
        "a.py:3 imports from the private module wfdb.io._signal",
        "a.py:6 uses np._private_helper",  # the annotation's argparse._SubParsersAction is allowed
    ]


def test_layer_check_detects_an_upward_import(toy: Path) -> None:
    (toy / "scores" / "b.py").write_text("X = 1\n")
    (toy / "record" / "a.py").write_text("from toy.scores.b import X\n")
    assert upward_imports(toy) == ["toy.record.a:1 imports toy.scores.b (upward: record -> scores)"]


def test_list_check_detects_an_import_the_doc_does_not_list(toy: Path, tmp_path: Path) -> None:
    # Below in the data walk but not on the row's list: text may import core only, not record.
    (toy / "text").mkdir()
    (toy / "text" / "__init__.py").write_text("")
    (toy / "record" / "a.py").write_text("X = 1\n")
    (toy / "text" / "b.py").write_text("from toy.record.a import X\n")
    doc = tmp_path / "ARCHITECTURE.md"
    doc.write_text("| stage | folder | may import |\n|---|---|---|\n| record | `record/` | core, errors |\n"
                   "| text | `text/` | core |\n| scores | `scores/` | text, … |\n")  # fmt: skip
    allowed = may_import(doc)
    assert allowed["scores"] == {"record", "text", "core"}  # "…" and the named rows' own lists
    assert upward_imports(toy) == []  # the order alone lets it through
    assert imports_outside_their_lists(toy, allowed) == ["toy.text.b:1 imports toy.record.a (text may import ['core'])"]


def test_function_import_check_detects_an_unmarked_import(toy: Path) -> None:
    (toy / "record" / "a.py").write_text("X = 1\n")
    (toy / "scores" / "b.py").write_text(
        "def f():\n    from toy.record.a import X\n    return X\n\n"
        "def g():\n    # torch is slow to import: only when called\n    from toy.record.a import X\n    return X\n\n"
        # a block marked once above it, a parenthesised import first (its ")" line ended the block before)
        "def h():\n    # slow\n    from toy.record.a import (\n        X,\n        Y,\n    )\n"
        "    from toy.record.c import Z\n    return X, Y, Z\n\n"
        "def i():\n    x = 1\n    from toy.record.a import X\n    return X\n"  # a comment two lines up is not its
    )
    assert unmarked_function_imports(toy) == [
        "toy.scores.b:2 imports toy.record.a inside a function without a comment saying why",
        "toy.scores.b:21 imports toy.record.a inside a function without a comment saying why",
    ]


def test_size_check_detects_a_long_function(toy: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (toy / "record" / "a.py").write_text(f"def long():\n{body}")
    assert oversized(toy) == [f"toy.record.a.long: {MAX_FUNCTION_LINES + 1} lines (limit {MAX_FUNCTION_LINES})"]
