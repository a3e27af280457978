"""The role's documentation and lint, without the lab: argument specs equal the defaults,
the README's table is generated from them, ansible-lint passes at the production profile."""
from __future__ import annotations

import importlib.util

import yaml

from lab.playbook import ANSIBLE_DIR, run

ROLE = ANSIBLE_DIR / "roles" / "ncdma"


def _load(relative: str) -> dict:
    return yaml.safe_load((ROLE / relative).read_text())


def test_argument_specs_document_every_default_with_its_value() -> None:
    defaults = _load("defaults/main.yml")
    options = _load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert list(options) == list(defaults), "same variables, in the same order"
    for name, option in options.items():
        assert option["default"] == defaults[name], name
        assert option["description"], name


def test_every_public_variable_is_prefixed_with_the_role_name() -> None:
    assert all(name.startswith("ncdma_") for name in _load("defaults/main.yml"))


def test_readme_table_is_generated_from_the_argument_specs() -> None:
    spec = importlib.util.spec_from_file_location("readme_table", ANSIBLE_DIR / "readme_table.py")
    assert spec and spec.loader
    readme_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_table)
    current = readme_table.README.read_text()
    assert readme_table.with_table(current, readme_table.render_table()) == current, \
        "roles/ncdma/README.md is stale: run python3 ansible/readme_table.py"


def test_ansible_lint_passes_at_the_production_profile() -> None:
    done = run("ansible-lint", "--profile", "production", timeout=300)
    assert done.returncode == 0, done.describe()
    assert "Profile 'production' was required, and it passed" in done.output, done.describe()
