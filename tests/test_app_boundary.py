import ast
from pathlib import Path

import shopguide

PACKAGE = Path(shopguide.__file__).parent


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def test_shopguide_never_imports_the_host_shop():
    offenders = [
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in PACKAGE.rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in {"catalog", "config"}
    ]
    assert offenders == []


def test_ml_package_does_not_import_django():
    offenders = [
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in (PACKAGE / "ml").rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] == "django"
    ]
    assert offenders == []
