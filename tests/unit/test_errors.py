"""The one exception tree: every class ncdma raises lives in errors.py, drawn in its docstring."""

from __future__ import annotations

import ast
import inspect
import re

from ncdma import errors
from tests.unit.importgraph import REPO


def _drawn() -> set[str]:
    """The class names the docstring's tree draws."""
    assert errors.__doc__ is not None
    return set(re.findall(r"^ {4,}(?:[| ]*\+-- )?([A-Z]\w+) ", errors.__doc__, re.M))


def test_the_docstring_draws_every_class_of_the_tree() -> None:
    classes = {name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, errors.NcdmaError)}
    assert _drawn() == classes


def test_no_exception_class_lives_outside_errors_py() -> None:
    elsewhere = []
    for path in sorted((REPO / "plugin/ncdma").rglob("*.py")):
        if path.name == "errors.py" and path.parent.name == "ncdma":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(base, ast.Name) and base.id.endswith(("Error", "Exception"))
                    for base in node.bases):
                elsewhere.append(f"{path.relative_to(REPO)}: {node.name}")
    assert elsewhere == []
