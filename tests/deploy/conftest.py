"""Fixtures for tests/deploy: the package and root file system that `make rootfs` builds,
and fresh roots made from it (an overlay over one unpacked copy of
dist/harepl-rootfs.tar, with a /proc of its own), entered with chroot.

Slow (a few minutes: the root file system's packages come from the Debian mirror); CI
runs them (`make test` runs every test). Needs root, mmdebstrap (scripts/install-system-deps),
chroot and overlayfs.
"""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}


def sh(*cmd: str, timeout: float = 120, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def inside(root: Path, *cmd: str, check: bool = True, timeout: float = 120,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in a root, as a shell on that node would."""
    return sh("chroot", str(root), *cmd, check=check, timeout=timeout, env={**CHROOT_ENV, **(env or {})})


def version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in pyproject.toml")


@pytest.fixture(scope="session")
def built() -> Path:
    """`make rootfs` (which runs `make deb` first); returns the .deb. The downloaded
    Debian packages are kept in a cache outside the checkout for the next run;
    HAREPL_TEST_REUSE_DIST=1 reuses dist/ as it is (while editing the tests only)."""
    if os.geteuid() != 0:
        pytest.skip("building and entering a root file system needs root")
    if not (os.environ.get("HAREPL_TEST_REUSE_DIST") and (DIST / "harepl-rootfs.tar").is_file()):
        for old in DIST.glob("harepl*"):
            old.unlink()
        cache = Path(os.environ.get("TMPDIR", "/tmp")) / "harepl-rootfs-apt-cache"
        r = subprocess.run(["make", "-s", "rootfs"], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                           env={**os.environ, "ROOTFS_APT_CACHE": str(cache)})
        assert r.returncode == 0, f"make rootfs -> {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    arch = sh("dpkg", "--print-architecture").stdout.strip()
    deb = DIST / f"harepl_{version()}-1_{arch}.deb"
    assert deb.is_file(), sorted(p.name for p in DIST.iterdir())
    assert (DIST / "harepl-rootfs.tar").is_file()
    return deb


_OUR_MOUNT = re.compile(r"/pytest-of-[^/]+/pytest-\d+/root-[^/]+/root(/|$)")


def _unmount_stale_roots() -> None:
    """Unmount roots a killed earlier run left mounted (deepest first): pytest later
    deletes old temporary directories, and must find plain directories there."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[4] for line in lines if len(line.split()) > 4]
    for point in sorted((p for p in points if _OUR_MOUNT.search(p)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture(scope="session")
def new_root(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """new_root(NAME): a fresh root from dist/harepl-rootfs.tar (its own writable layer).
    Its /dev holds the device nodes mmdebstrap put in the tar (the host's /dev is not
    bound in, so nothing that deletes the tree can reach the host's devices); /proc is
    a procfs of its own."""
    _unmount_stale_roots()
    lower = tmp_path_factory.mktemp("rootfs-lower")
    with tarfile.open(DIST / "harepl-rootfs.tar") as tar:
        tar.extractall(lower, filter="fully_trusted")
    roots: list[Path] = []

    def make(name: str) -> Path:
        base = tmp_path_factory.mktemp(f"root-{name}")
        upper, work, merged = base / "upper", base / "work", base / "root"
        for d in (upper, work, merged):
            d.mkdir()
        sh("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}",
           str(merged))
        roots.append(merged)
        sh("mount", "-t", "proc", "proc", str(merged / "proc"))
        return merged

    yield make
    for merged in reversed(roots):
        for target in (merged / "proc", merged):
            r = subprocess.run(["umount", "-l", str(target)], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"tests/deploy: umount {target}: {r.stderr.strip()}")
