"""Shell completion and man page (issue 18), generated from the parser: bash itself runs
the completion function; groff renders the man page without a warning, and both name every
subcommand and option the parser has."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from ncdma.cli.docs import subcommands
from ncdma.cli.main import build_parser
from ncdma.model.policy import MigrationPolicy


def _ncdma(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ncdma", *args], capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout


def complete(*words: str) -> list[str]:
    """What bash's completion of ``ncdma WORDS...`` offers (the last word being typed)."""
    script = _ncdma("completion", "bash")
    line = " ".join(["ncdma", *words])
    driver = (f"{script}\nCOMP_WORDS=(ncdma {' '.join(repr(word) for word in words)})\n"
              f"COMP_CWORD={len(words)}\nCOMP_LINE={line!r}\n_ncdma\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    done = subprocess.run(["bash", "--norc", "--noprofile"], input=driver, capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.split()


def test_bash_completes_subcommands_options_and_choices() -> None:
    assert complete("mi") == ["migrate"]
    assert set(complete("")) >= set(subcommands(build_parser()))
    assert complete("enable", "vm", "--mig") == ["--migration"]
    assert complete("enable", "vm", "--migration", "") == [
        policy.value for policy in MigrationPolicy]
    assert "--copy-storage-synchronous-writes" in complete("migrate", "vm", "--copy-storage")
    assert complete("peer", "re") == ["receive", "resume"]


@pytest.mark.parametrize("name", sorted(subcommands(build_parser())))
def test_every_option_of_every_subcommand_completes(name: str) -> None:
    command = subcommands(build_parser())[name]
    options = {option for action in command._actions for option in action.option_strings
               if option.startswith("--")}
    offered = set(complete(name, "x", "--"))
    assert options <= offered, options - offered


def test_man_page_renders_cleanly_and_lists_everything() -> None:
    roff = _ncdma("manpage")
    done = subprocess.run(["groff", "-man", "-Tutf8", "-ww"], input=roff, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stderr == ""
    text = re.sub(".\b", "", done.stdout).replace("\u2010", "-")  # overstrikes, hyphens
    for name, command in subcommands(build_parser()).items():
        assert f"ncdma {name}" in text
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue  # -h, --help: every command's, said once in the synopsis
            for option in action.option_strings:
                assert option in roff.replace("\\-", "-"), (name, option)
    assert "Exit status: 0 ok, 1 refused or failed, 2 usage error." in " ".join(text.split())
