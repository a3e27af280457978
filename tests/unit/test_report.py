"""The text and JSON views of a host report come from the same data."""

import json

from ncdma.cli.check import SCHEMA_VERSION, check_json, check_text
from ncdma.model.verdict import decide_mode
from tests.unit.hostreports import PATCHED_INTEL, UNPATCHED_AMD, variant


def test_json_document_is_serializable_and_carries_the_verdict() -> None:
    document = json.loads(json.dumps(check_json(UNPATCHED_AMD, decide_mode(UNPATCHED_AMD))))
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["mode"] == "audit" and document["enforce_possible"] is False
    assert [a["outcome"] for a in document["host"]["probe"]["answers"]] == ["EINVAL", "EINVAL"]
    assert document["host"]["probe"]["flag_supported"] is False


def test_text_shows_mode_reasons_and_flag_in_hex() -> None:
    text = check_text(UNPATCHED_AMD, decide_mode(UNPATCHED_AMD))
    assert "mode: audit only" in text
    assert "why not enforce:" in text
    assert "flag 0x8" in text and "EINVAL" in text


def test_enforce_text_has_no_reasons_section() -> None:
    text = check_text(PATCHED_INTEL, decide_mode(PATCHED_INTEL))
    assert "mode: enforce" in text and "why not" not in text


def test_without_probe_the_json_has_the_error_and_no_probe() -> None:
    report = variant(probe=None, probe_error="/dev/kvm does not exist")
    document = check_json(report, decide_mode(report))
    assert document["mode"] == "none" and document["host"]["probe"] is None
    assert document["host"]["probe_error"] == "/dev/kvm does not exist"
