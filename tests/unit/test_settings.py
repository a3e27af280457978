"""/etc/ncdma/ncdma.conf: defaults, values, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ncdma import standin
from ncdma.errors import ConfigError
from ncdma.settings import Settings, load_settings


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "ncdma.conf"
    path.write_text(text)
    return load_settings(path)


def test_missing_file_means_defaults(tmp_path) -> None:
    assert load_settings(tmp_path / "absent.conf") == Settings(source=tmp_path / "absent.conf")


def test_the_lab_stand_in_is_refused_outside_the_lab(tmp_path) -> None:
    with pytest.raises(ConfigError, match="lab_stand_in = yes is for ncdma's lab only") as err:
        _load(tmp_path, "[ncdma]\nlab_stand_in = yes\n")
    assert "remove lab_stand_in" in err.value.hint


def test_the_lab_stand_in_on_a_lab_host(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "ncdma-lab-host"
    marker.write_text("lab\n")
    monkeypatch.setattr(standin, "LAB_MARKER", marker)
    settings = _load(tmp_path, "[ncdma]\nlab_stand_in = yes\n")
    assert (settings.stand_in, settings.flag) == (True, 0x2)
    assert not _load(tmp_path, "[ncdma]\nlab_stand_in = no\n").stand_in
    with pytest.raises(ConfigError, match="exclude each other"):
        _load(tmp_path, "[ncdma]\nlab_stand_in = yes\nflag = 0x8\n")


def test_every_key(tmp_path) -> None:
    settings = _load(tmp_path, "[ncdma]\nflag = 0x10\nstate_dir = /srv/s\nlog_file =\n"
                               "syslog = no\nhook_timeout = 2.5\nwrapper = /w\nqemu = /q\n")
    assert (settings.flag, settings.state_dir, settings.log_file, settings.syslog,
            settings.hook_timeout, settings.wrapper, settings.qemu) == \
        (16, Path("/srv/s"), None, False, 2.5, Path("/w"), Path("/q"))
    assert settings.domain_dir("u") == Path("/srv/s/domains/u")


def test_environment_names_another_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "other.conf"
    path.write_text("[ncdma]\nhook_timeout = 3\n")
    monkeypatch.setenv("NCDMA_CONFIG", str(path))
    assert load_settings().hook_timeout == 3


@pytest.mark.parametrize("text, problem", [
    ("[ncdma]\nflag = 3\n", "flag = '3' is invalid"),
    ("[ncdma]\nflag = 0x2\n", "flag = '0x2' is invalid"),
    ("[ncdma]\nhook_timeout = soon\n", "hook_timeout = 'soon' is invalid: seconds"),
    ("[ncdma]\nhook_timeout = 0\n", "hook_timeout = '0' is invalid"),
    ("[ncdma]\nhook_timeout = 1e9\n", "at most 300"),
    ("[ncdma]\nsyslog = maybe\n", "yes or no"),
    ("[ncdma]\nstate_dir = run/ncdma\n", "absolute path"),
    ("[ncdma]\ncolour = blue\n", "unknown key 'colour'"),
    ("[other]\n", "unknown section [other]"),
    ("flag = 8\n", "not valid INI"),
    ("[ncdma]\nflag = 8\nflag = 16\n", "not valid INI"),
])
def test_bad_values_name_the_key_and_the_file(tmp_path, text, problem) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert problem in caught.value.message
    assert str(tmp_path / "ncdma.conf") in str(caught.value)
    assert caught.value.exit_status == 2


def test_unreadable_file(tmp_path) -> None:
    path = tmp_path / "ncdma.conf"
    path.write_bytes(b"\xff\xfe[ncdma]")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(path)
