"""The Debian package and the root file system (issue 14, deploy/).

`make rootfs` builds dist/harepl_VERSION-1_ARCH.deb (`make deb`, deploy/build-deb) and
dist/harepl-rootfs.tar (deploy/build-rootfs: mmdebstrap bookworm from this machine's
apt sources, systemd, the package and its dependencies). A fresh root made from the tar
(tests/deploy/conftest.py) is entered with chroot: the commands run there, the units are
enabled and pass `systemd-analyze verify`, an upgrade keeps data_dir, a purge removes
what the package made. Slow (a few minutes); CI runs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.conftest import inside, sh, version

UNITS = ("harepl.service", "harepl-watchdog-mux.service")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def chroot(new_root: Callable[[str], Path]) -> Path:
    return new_root("package")


def test_the_package_declares_its_dependencies_and_files(built: Path) -> None:
    fields = sh("dpkg-deb", "-f", str(built), "Package", "Version", "Depends").stdout
    assert f"Version: {version()}-1" in fields
    depends = fields.split("Depends:")[1]
    for dep in ("resource-agents", "fence-agents", "python3 (>= 3.11)"):
        assert dep in depends, depends
    files = sh("dpkg-deb", "-c", str(built)).stdout
    for path in ("./usr/bin/harepl -> /opt/harepl/bin/harepl", "./usr/bin/ha-manager -> /opt/harepl/bin/ha-manager",
                 "./lib/systemd/system/harepl.service", "./lib/systemd/system/harepl-watchdog-mux.service",
                 "./usr/lib/tmpfiles.d/harepl.conf", "./etc/modules-load.d/harepl-softdog.conf",
                 "./etc/harepl/harepl.toml", "./opt/harepl/pyvenv.cfg"):
        assert path in files, path
    conffiles = sh("dpkg-deb", "-I", str(built), "conffiles").stdout.split()
    assert conffiles == ["/etc/harepl/harepl.toml", "/etc/modules-load.d/harepl-softdog.conf"]


def test_the_commands_run_in_the_fresh_root(chroot: Path) -> None:
    r = inside(chroot, "harepl", "--version")
    assert r.stdout.strip() == f"harepl, version {version()}"
    r = inside(chroot, "ha-manager", "--help")
    assert r.returncode == 0 and "Usage:" in r.stdout and "status" in r.stdout
    # the interpreter is Debian's, the environment the package's own
    r = inside(chroot, "/opt/harepl/bin/python", "-c", "import sys, pysyncobj; print(sys.base_prefix, sys.prefix)")
    assert r.stdout.split() == ["/usr", "/opt/harepl"]
    # nothing of the build machine's staging tree is left in the environment
    r = inside(chroot, "grep", "-rlI", "harepl-deb.", "/opt/harepl", check=False)
    assert r.returncode == 1 and r.stdout == "", r.stdout


def test_the_units_are_enabled_and_verify(chroot: Path) -> None:
    r = inside(chroot, "systemctl", "is-enabled", *UNITS)
    assert r.stdout.split() == ["enabled", "enabled"]
    assert (chroot / "etc/systemd/system/multi-user.target.wants/harepl.service").is_symlink()
    r = inside(chroot, "systemd-analyze", "verify", *(f"/lib/systemd/system/{u}" for u in UNITS), check=False)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
    unit = (chroot / "lib/systemd/system/harepl.service").read_text()
    for line in ("Type=notify", "Delegate=yes", "After=network-online.target harepl-watchdog-mux.service",
                 "Restart=on-failure", "RestartPreventExitStatus=2", "KillMode=process"):
        assert line in unit.splitlines(), line
    assert (chroot / "usr/lib/tmpfiles.d/harepl.conf").is_file()
    assert (chroot / "etc/modules-load.d/harepl-softdog.conf").read_text().splitlines()[-1] == "softdog"
    # tmpfiles ran at install: data_dir and the log directory exist, root-only
    for d in ("var/lib/harepl", "var/log/harepl"):
        assert (chroot / d).is_dir() and (chroot / d).stat().st_mode & 0o777 == 0o700, d


def test_the_default_config_explains_what_is_missing(chroot: Path) -> None:
    r = inside(chroot, "harepl", "daemon", "--config", "/etc/harepl/harepl.toml", "--check", check=False)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == ("harepl daemon: /etc/harepl/harepl.toml: secret_file: cannot read /etc/harepl/secret: "
                        "No such file or directory\n")


def test_upgrade_keeps_data_dir_and_purge_removes_what_it_made(chroot: Path, built: Path) -> None:
    marker = chroot / "var/lib/harepl/store/raft.journal"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("journal\n")
    (chroot / "etc/harepl/secret").write_text("s" * 32 + "\n")
    shutil.copy(built, chroot / "tmp/harepl.deb")
    inside(chroot, "dpkg", "-i", "/tmp/harepl.deb", timeout=300)  # the same version again: an upgrade
    assert marker.read_text() == "journal\n"
    assert inside(chroot, "systemctl", "is-enabled", *UNITS).stdout.split() == ["enabled", "enabled"]
    assert inside(chroot, "harepl", "--version").returncode == 0

    inside(chroot, "dpkg", "--purge", "harepl", timeout=300)
    for path in ("opt/harepl", "usr/bin/harepl", "usr/bin/ha-manager", "lib/systemd/system/harepl.service",
                 "usr/lib/tmpfiles.d/harepl.conf", "etc/modules-load.d/harepl-softdog.conf",
                 "etc/harepl/harepl.toml", "var/lib/harepl", "var/log/harepl",
                 "etc/systemd/system/multi-user.target.wants/harepl.service",
                 "etc/systemd/system/multi-user.target.wants/harepl-watchdog-mux.service"):
        assert not os.path.lexists(chroot / path), path
    # what the operator made stays (docs/operations.md: rm -r /etc/harepl after a purge)
    assert (chroot / "etc/harepl/secret").is_file()
    # and the package installs again into the purged root
    inside(chroot, "dpkg", "-i", "/tmp/harepl.deb", timeout=300)
    assert inside(chroot, "systemctl", "is-enabled", *UNITS).stdout.split() == ["enabled", "enabled"]
