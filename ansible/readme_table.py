"""The variable table of roles/ncdma/README.md, generated from meta/argument_specs.yml.

    python3 ansible/readme_table.py           # rewrite the table in the README
    python3 ansible/readme_table.py --check   # exit 1 if the README's table is stale

tests/integration/ansible/test_role_static.py fails when the README is out of date.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parent / "roles" / "ncdma"
README = ROLE / "README.md"
BEGIN = ("<!-- BEGIN variables: generated from meta/argument_specs.yml "
         "by ansible/readme_table.py -->")
END = "<!-- END variables -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(option: dict) -> str:
    value = option.get("default")
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`" if text != "" else '`""`'


def render_table(spec_path: Path = ROLE / "meta" / "argument_specs.yml") -> str:
    """The Markdown table of every option of the role's main entry point."""
    options = yaml.safe_load(spec_path.read_text())["argument_specs"]["main"]["options"]
    rows = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    for name, option in options.items():
        kind = option["type"] + (f" of {option['elements']}" if "elements" in option else "")
        description = option["description"]
        if isinstance(description, list):
            description = " ".join(description)
        if "choices" in option:
            description += " Choices: " + ", ".join(f"`{c}`" for c in option["choices"]) + "."
        rows.append(f"| `{name}` | {kind} | {_cell(_default(option))} | {_cell(description)} |")
    return "\n".join(rows)


def with_table(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    head, found, rest = readme.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise SystemExit(f"{README}: the markers {BEGIN!r} and {END!r} are missing")
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def main(argv: list[str]) -> int:
    current = README.read_text()
    wanted = with_table(current, render_table())
    if "--check" in argv:
        if wanted != current:
            print(f"{README} is stale: run python3 ansible/readme_table.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
