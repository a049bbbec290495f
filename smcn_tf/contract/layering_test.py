"""The serving contract lies below export and serving, which do not import each other.

Every import counts, also those inside functions (imported on first use) and
the lazy package attributes of the `__init__.py` files (`_EXPORTS`).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1]
# Package -> the packages its modules must not import.
FORBIDDEN = {
    "contract": ("smcn_tf.export", "smcn_tf.serving"),
    "export": ("smcn_tf.serving",),
    "serving": ("smcn_tf.export",),
}


def imported_modules(path):
    """Every module a file imports, at any depth, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, node.lineno
            for alias in node.names:  # `from smcn_tf import serving`
                yield f"{node.module}.{alias.name}", node.lineno
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "_EXPORTS" for target in node.targets
        ):
            for value in node.value.values:
                yield value.value, value.lineno


def _is_within(module, package):
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_crosses_the_contract(package):
    files = sorted((PACKAGE / package).rglob("*.py"))
    assert files
    crossings = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for path in files
        if not path.name.endswith("_test.py") and path.name != "conftest.py"
        for module, line in imported_modules(path)
        if any(_is_within(module, forbidden) for forbidden in FORBIDDEN[package])
    ]
    assert not crossings, "\n".join(crossings)


def test_the_check_sees_lazy_and_nested_imports(tmp_path):
    path = tmp_path / "example.py"
    path.write_text(
        "def f():\n    from smcn_tf import serving\n"
        "_EXPORTS = {'x': 'smcn_tf.serving.client'}\n"
    )
    modules = [module for module, _ in imported_modules(path)]
    assert "smcn_tf.serving" in modules and "smcn_tf.serving.client" in modules
