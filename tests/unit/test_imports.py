"""The import graph keeps the architecture: no cycle, no upward import (README "Architecture")."""

from __future__ import annotations

import re

import ncdma
from tests.unit.importgraph import REPO, cycles, read_graph, upward


def test_the_project_has_no_import_cycle() -> None:
    assert cycles(read_graph()) == []


def test_no_module_imports_upward_or_sideways() -> None:
    assert upward(read_graph()) == []


def test_the_graph_is_read_from_every_folder() -> None:
    """A checker that read nothing would pass: it must see the edges it is there to judge."""
    graph = read_graph()
    assert "ncdma.linux.seccomp" in graph["ncdma.wrapper"]
    assert "ncdma.hook.operations" in graph["ncdma.hook.entry"]  # an import inside a function
    assert "lab.guests.build" in graph["bench.guard"]
    assert "ncdma.settings" in graph["lab.kernel.inside"]


def test_the_checker_finds_a_cycle_and_upward_imports() -> None:
    graph = {
        "ncdma.hook.entry": frozenset({"ncdma.hook.operations"}),
        "ncdma.hook.operations": frozenset({"ncdma.hook.entry", "ncdma.store.state"}),
        "ncdma.store.state": frozenset({"ncdma.errors"}),
        "ncdma.errors": frozenset(),
        "ncdma.guard.task": frozenset({"ncdma.migrate.run"}),  # sideways: one layer
        "ncdma.migrate.run": frozenset({"ncdma.cli.status"}),  # upward
        "ncdma.cli.status": frozenset(),
        "ncdma.linux.seccomp": frozenset({"ncdma.kvm.abi"}),  # upward inside core
        "ncdma.kvm.abi": frozenset(),
        "ncdma.extra.thing": frozenset({"ncdma.errors"}),  # a component without a layer
        "lab.guarded": frozenset({"tests.host.conftest"}),  # nothing imports tests
        "tests.host.conftest": frozenset({"lab.guarded"}),
    }
    assert cycles(graph) == [["lab.guarded", "tests.host.conftest"],
                             ["ncdma.hook.entry", "ncdma.hook.operations"]]
    assert upward(graph) == [
        "lab.guarded -> tests.host.conftest: lab/ may not import tests/",
        "ncdma.extra.thing -> ncdma.errors: ncdma.extra has no layer: add it to RANKS and to "
        "the architecture docs",
        "ncdma.guard.task -> ncdma.migrate.run: import between components of one layer",
        "ncdma.linux.seccomp -> ncdma.kvm.abi: import from a higher layer",
        "ncdma.migrate.run -> ncdma.cli.status: import from a higher layer",
    ]


def _words(text: str, pattern: str) -> str:
    """What ``pattern``'s group matches in ``text``, without markup and line breaks."""
    match = re.search(pattern, text, re.S)
    assert match, f"no {pattern!r} in the text"
    return re.sub(r"\s+", " ", re.sub(r":mod:|`", "", match.group(1)))


RULE = r"Import rule: (.*?\.)\s*\n\s*\n"
LAYERS = r"is layered; from the top:(.*?)checks all of it"


def test_readme_and_pydoc_state_the_same_rule() -> None:
    assert ncdma.__doc__ is not None
    assert _words((REPO / "README.md").read_text(), RULE) == _words(ncdma.__doc__, RULE)


def test_readme_and_pydoc_describe_the_layout_in_the_same_words() -> None:
    assert ncdma.__doc__ is not None
    described = _words(ncdma.__doc__, LAYERS)
    assert _words((REPO / "README.md").read_text(), LAYERS) == described
    for package in sorted(path.name for path in (REPO / "plugin/ncdma").iterdir()
                          if (path / "__init__.py").exists()):
        assert f"ncdma.{package} " in described, f"ncdma.{package} is not described"
