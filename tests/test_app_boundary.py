"""Import boundaries: shopguide never imports the host shop or the demo project, its ``ml``
package imports nothing of shopguide outside itself (so no Django), and no module imports
itself back through others when loaded."""

import ast
from pathlib import Path

import shopguide

PACKAGE = Path(shopguide.__file__).parent


def module_name(path):
    parts = ("shopguide",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path, top_level_only=False):
    """Absolute names of the modules ``path`` imports (relative imports resolved; with
    ``top_level_only``, only those run when the module loads, not inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    nodes = (
        ast.walk(tree)
        if not top_level_only
        else (
            node
            for statement in tree.body
            for node in ast.walk(statement)
            if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        )
    )
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module if node.level == 0 else ".".join(filter(None, [base, node.module]))
            yield module
            # "from . import operations" imports a module, not a name
            yield from (f"{module}.{alias.name}" for alias in node.names)


def test_shopguide_never_imports_the_host_shop():
    offenders = [
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in PACKAGE.rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in {"catalog", "config"}
    ]
    assert offenders == []


def test_the_ml_package_imports_nothing_outside_itself():
    offenders = [
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in (PACKAGE / "ml").rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] == "django"
        or (module.startswith("shopguide") and not module.startswith("shopguide.ml"))
    ]
    assert offenders == []


def test_the_boundary_check_sees_relative_imports(tmp_path):
    path = PACKAGE / "ml" / "ranking.py"
    assert "shopguide.ml.lexical" in set(imported_modules(path))  # "from .lexical import BM25Index"


def test_no_import_cycle_among_shopguide_modules():
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}
    graph = {
        name: {module for module in imported_modules(path, top_level_only=True) if module in paths} - {name}
        for name, path in paths.items()
    }
    cycles, state = [], {}

    def visit(name, trail):
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                cycles.append(" -> ".join(trail[trail.index(other) :] + [other]))
            elif other not in state:
                visit(other, trail + [other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
