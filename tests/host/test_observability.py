"""Logs and metrics for operators (issue 18): the log file survives logrotate, log_level
is honored, every hook failure's traceback is logged, `ncdma migrate` runs are logged and
counted, and `ncdma metrics` is a valid Prometheus textfile (checked with prometheus_client's
own parser) from a real guard service, the real hook and the real counters file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab.guarded import GuardedHost
from lab.guests.build import build_guest
from ncdma.errors import MigrationFailed, MigrationRefused
from ncdma.hook import entry as hook
from ncdma.logs import configure_logging
from ncdma.migrate.record import record_run
from ncdma.migrate.summary import Summary
from ncdma.model.verdict import Mode
from ncdma.settings import load_settings
from tests.host.test_hook import REPO, domain_xml


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ncdma.conf with its own state directory and log file, info level."""
    path = tmp_path / "ncdma.conf"
    path.write_text(f"[ncdma]\nstate_dir = {tmp_path}/state\nlog_file = {tmp_path}/ncdma.log\n"
                    "syslog = no\nlog_level = info\n")
    monkeypatch.setenv("NCDMA_CONFIG", str(path))
    return path


def _metrics(env: dict[str, str] | None = None) -> dict[str, dict[tuple, float]]:
    done = subprocess.run([sys.executable, "-m", "ncdma", "metrics"], capture_output=True,
                          text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    return {family.name: {tuple(sorted(sample.labels.items())): sample.value
                          for sample in family.samples}
            for family in text_string_to_metric_families(done.stdout)}


def test_log_file_is_reopened_after_logrotate_rotated_it(conf: Path) -> None:
    """data/logrotate/ncdma run by Debian's logrotate (forced) on a log file in use."""
    log_file = conf.parent / "ncdma.log"
    rules = conf.parent / "logrotate.conf"
    rules.write_text((REPO / "data/logrotate/ncdma").read_text()
                     .replace("/var/log/ncdma/ncdma.log", str(log_file))
                     .replace("create 0640 root adm", "create 0640 root root"))
    log = configure_logging(load_settings(), "hook")
    log.info("before rotation")
    done = subprocess.run(["logrotate", "--force", "--state", str(conf.parent / "state.lr"),
                           str(rules)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    log.info("after rotation")
    assert "before rotation" in (conf.parent / "ncdma.log.1").read_text()
    assert "after rotation" in log_file.read_text()
    assert "before rotation" not in log_file.read_text()


def test_log_level_is_honored_and_checked(conf: Path) -> None:
    conf.write_text(conf.read_text().replace("log_level = info", "log_level = warning"))
    log = configure_logging(load_settings(), "hook")
    log.info("an info line")
    log.warning("a warning line")
    text = (conf.parent / "ncdma.log").read_text()
    assert "a warning line" in text and "an info line" not in text
    conf.write_text(conf.read_text().replace("log_level = warning", "log_level = loud"))
    with pytest.raises(Exception, match="log_level = 'loud' is invalid: debug, info, warning"):
        load_settings()


def test_every_hook_failure_has_its_traceback_in_the_log_and_is_counted(conf: Path) -> None:
    bad = domain_xml("mode='sometimes'")
    outcome = hook.run(["vm1", "prepare", "begin", "-"], bad)
    assert outcome.status == 1 and "'mode'" in outcome.stderr
    assert "\n" not in outcome.stderr  # libvirt gets one line
    text = (conf.parent / "ncdma.log").read_text()
    assert "ERROR: ncdma: prepare of vm1: ncdma metadata: attribute 'mode'" in text
    assert "Traceback (most recent call last)" in text and "PolicyError" in text
    hook.run(["vm1", "prepare", "begin", "-"], bad)
    hook.run(["vm1", "release", "end", "-"], bad)  # never fails: not a refusal
    counted = _metrics()["ncdma_hook_refusals"]
    assert counted == {(("operation", "prepare"),): 2.0}


def test_every_migrate_run_is_logged_and_counted(conf: Path) -> None:
    settings = load_settings()
    log = configure_logging(settings, "migrate")
    done = Summary('vm "one"', "qemu+ssh://h2/system", strategy="copy", outcome="migrated",
                   downtime_ms={"libvirt": 40.0, "total": 250.0})
    record_run(settings, done, None, log)
    paused = Summary("vm2", "qemu+ssh://h2/system", notes=["left paused on the destination"])
    record_run(settings, paused, MigrationFailed("the slots were not written"), log)
    record_run(settings, Summary("vm3", "qemu+ssh://h2/system"),
               MigrationRefused("vm3 has tagged slots and its policy is refuse"), log)
    text = (conf.parent / "ncdma.log").read_text()
    assert ('INFO: vm "one" -> qemu+ssh://h2/system: migrated; strategy copy; downtime '
            "250.0 ms") in text
    assert ("ERROR: vm2 -> qemu+ssh://h2/system: failed; left paused on the destination; "
            "the slots were not written") in text
    assert "ncdma.migrate[" in text
    metrics = _metrics()
    assert metrics["ncdma_migrations"] == {(("outcome", "migrated"),): 1.0,
                                           (("outcome", "failed"),): 1.0,
                                           (("outcome", "refused"),): 1.0}
    assert metrics["ncdma_migration_last_downtime_seconds"] == {(("domain", 'vm "one"'),): 0.25}


def test_metrics_show_the_host_mode_and_the_guard_service(short_tmp: Path) -> None:
    guarded = GuardedHost(short_tmp)
    env = guarded.env
    before = _metrics(env)
    assert before["ncdma_guardd_up"] == {(): 0.0}
    mode = json.loads(subprocess.run([sys.executable, "-m", "ncdma", "check", "--json"],
                                     capture_output=True, text=True, env=env).stdout)["mode"]
    assert before["ncdma_host_mode"][(("mode", mode),)] == 1.0
    assert sum(before["ncdma_host_mode"].values()) == 1.0
    guarded.start_service()
    try:
        assert _metrics(env)["ncdma_guardd_up"] == {(): 1.0}
    finally:
        guarded.stop_service()
    assert _metrics(env)["ncdma_guardd_up"] == {(): 0.0}


def test_textfile_is_written_atomically_and_readable(conf: Path, tmp_path: Path) -> None:
    target = tmp_path / "textfile" / "ncdma.prom"
    target.parent.mkdir()
    done = subprocess.run([sys.executable, "-m", "ncdma", "metrics", "--textfile", str(target)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert os.listdir(target.parent) == ["ncdma.prom"]  # no temporary file left behind
    assert target.stat().st_mode & 0o777 == 0o644
    names = {family.name for family in text_string_to_metric_families(target.read_text())}
    assert {"ncdma_host_mode", "ncdma_guardd_up", "ncdma_guard_alive", "ncdma_tagged_slots",
            "ncdma_guard_restarts", "ncdma_hook_refusals", "ncdma_migrations",
            "ncdma_migration_last_downtime_seconds"} <= names
    missing = subprocess.run([sys.executable, "-m", "ncdma", "metrics", "--textfile",
                              str(tmp_path / "nowhere" / "ncdma.prom")],
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 1 and "cannot write" in missing.stderr



def test_metrics_and_status_follow_a_guarded_qemu_and_count_its_restarts(host: GuardedHost,
                                                                    tmp_path: Path) -> None:
    """QEMU 7.2 under KVM through the wrapper and the real guard service (audit mode on this
    kernel: nothing is tagged); its guard killed once is counted as restarted."""
    image = build_guest("bartoggle", tmp_path, TOGGLES=8000)
    domain = host.plan(Mode.AUDIT)
    qemu = subprocess.Popen(host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga",
                                              "-device", "isa-debug-exit,iobase=0x501,iosize=2",
                                              "-bios", str(image)),
                            env=host.env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while host.guard_pid(domain) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        guard = host.guard_pid(domain)
        assert guard is not None and qemu.poll() is None
        metrics = _metrics(host.env)
        labels = next(iter(metrics["ncdma_guard_alive"]))
        assert dict(labels)["uuid"] == domain and metrics["ncdma_guard_alive"][labels] == 1.0
        assert metrics["ncdma_tagged_slots"][labels] == 0.0
        assert metrics["ncdma_guard_restarts"] == {}
        # `ncdma status` without a domain: every domain running with ncdma, one line each
        listed = subprocess.run([sys.executable, "-m", "ncdma", "status", "--json"],
                                capture_output=True, text=True, env=host.env, timeout=60)
        assert listed.returncode == 0, listed.stderr
        (only,) = json.loads(listed.stdout)["domains"]
        assert only["plan"]["uuid"] == domain and only["guard"]["alive"]
        table = subprocess.run([sys.executable, "-m", "ncdma", "status"], capture_output=True,
                               text=True, env=host.env, timeout=60).stdout.splitlines()
        assert table[0].split()[:3] == ["domain", "uuid", "mode"]
        assert domain in table[1] and "alive" in table[1]
        os.kill(guard, signal.SIGKILL)
        while "a new guard takes over" not in host.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        restarts = _metrics(host.env)["ncdma_guard_restarts"]
        assert restarts == {tuple(sorted((*labels, ("reason", "died")))): 1.0}, restarts
    finally:
        qemu.kill()
        qemu.wait()
