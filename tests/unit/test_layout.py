"""The package layout says the architecture: read the import graph of `reconciler` and `chains`
(module-level and function-level imports, `if TYPE_CHECKING:` blocks included) and check it.

- no import cycle between the project's modules;
- at most 10 modules at the top of `reconciler/`;
- no module over 800 lines (migrations excluded);
- the command line is a package, `reconciler/cli/`;
- no package's `__init__.py` imports anything;
- the core (`reconciler.domain`, `reconciler.engine.*`, `reconciler.transfers`,
  `reconciler.walletconfig`, `reconciler.errors`) imports nothing from the ledger, the command
  line, the use cases, the daemon or the chain adapters, and of `reconciler.inputs` only the
  settings dataclasses (`reconciler.inputs.settings`);
- `reconciler.ledger.*` imports nothing from `reconciler.inputs`.

`from x import y` counts as an import of module `x.y` when that is a module, else of `x`;
third-party and standard-library imports are left out.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("reconciler", "chains")
MAX_TOP_LEVEL = 10
MAX_LINES = 800

CORE = (
    "reconciler.domain",
    "reconciler.engine",
    "reconciler.transfers",
    "reconciler.walletconfig",
    "reconciler.errors",
)
NOT_FROM_CORE = ("reconciler.ledger", "reconciler.cli", "reconciler.app", "reconciler.daemon", "chains")
INPUTS = ("reconciler.inputs",)
# The one allowed edge from the core to an outer layer: settings are pure values, and the engine
# reads them as its inputs (asset tolerances, wallet roles, segregation targets), so it may
# import the settings dataclasses and nothing else of `reconciler.inputs`.
CORE_ALLOWED = ("reconciler.inputs.settings",)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _excluded(path: Path) -> bool:
    return "migrations" in path.relative_to(ROOT).parts


@cache
def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not _excluded(path):
                found[_module_name(path)] = path
    return found


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _resolve(current: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not _is_package(current):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(current: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    known = modules()
    found: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            name = alias.name
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
        return found
    base = _resolve(current, node)
    for alias in node.names:
        full = f"{base}.{alias.name}"
        if full in known:
            found.add(full)
        elif base in known:
            found.add(base)
    return found


@cache
def graph() -> dict[str, frozenset[str]]:
    edges: dict[str, frozenset[str]] = {}
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):  # every import, at module level or inside a function
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets |= _targets(name, node)
        targets.discard(name)
        edges[name] = frozenset(targets)
    return edges


def _cycle() -> list[str] | None:
    edges = graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_cycle() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_few_modules_at_the_top_of_reconciler() -> None:
    top = sorted(p.name for p in (ROOT / "reconciler").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


def test_no_module_over_800_lines() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not long, long


def test_the_command_line_is_a_package() -> None:
    assert (ROOT / "reconciler" / "cli" / "__init__.py").is_file()
    assert not (ROOT / "reconciler" / "cli.py").exists()


def test_package_inits_import_nothing() -> None:
    """A package's __init__.py is its docstring: an import there runs whenever any module of
    the package is imported, and makes package-level cycles."""
    for name, path in modules().items():
        if path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        assert not imports, f"{name} imports at package level"


def test_the_core_imports_no_outer_layer() -> None:
    wrong = {
        (name, target)
        for name, targets in graph().items()
        if _within(name, CORE)
        for target in targets
        if _within(target, NOT_FROM_CORE) or (_within(target, INPUTS) and not _within(target, CORE_ALLOWED))
    }
    assert not wrong, sorted(wrong)


def test_the_ledger_imports_no_input_format() -> None:
    wrong = {
        (name, target)
        for name, targets in graph().items()
        if _within(name, ("reconciler.ledger",))
        for target in targets
        if _within(target, INPUTS)
    }
    assert not wrong, sorted(wrong)
