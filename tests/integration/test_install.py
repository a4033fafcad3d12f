"""Issue 15 part 5: a built wheel installed with pipx gives working `l2mesh` and `l2mesh-ctl` with the package's
data files, and the systemd units in contrib/ name the binaries where README's install puts them (and verify).

Integration-marked (it lives here): the pipx install fetches l2mesh's dependencies from the package index
(from pip's cache after the first run) and takes about a minute. Nothing outside a temporary directory is
touched: PIPX_HOME and PIPX_BIN_DIR point into it, and the wheel is built from a copy of the source tree.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "contrib" / "systemd").glob("*.service"))
INSTALL_TIMEOUT_S = 900
# Files the web UI's helper ships; the copy gets one of each too, so the test proves the patterns even
# before any exist in the tree.
PROBE_DATA_FILES = ("l2mesh/edge/controller/web/static/probe.css", "l2mesh/edge/controller/web/templates/probe.html")


def _data_files(root: Path) -> set[str]:
    """Package data under root (static files and templates), as paths relative to root."""
    return {
        p.relative_to(root).as_posix()
        for p in root.glob("l2mesh/**/*")
        if p.is_file() and ({"static", "templates"} & set(p.relative_to(root).parts))
        and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, set[str]]:
    """(bin dir with l2mesh and l2mesh-ctl, the wheel, the data files the source holds), installed by pipx."""
    pipx = shutil.which("pipx")
    if pipx is None:
        pytest.skip("pipx is not installed (make deps installs it: apt-get install pipx)")
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".hypothesis", ".pytest_cache", "benchmarks", "tests"))
    for name in PROBE_DATA_FILES:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("/* probe */\n")
    wheels = work / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
                   check=True, timeout=300, capture_output=True)
    (wheel,) = wheels.glob("l2mesh-*.whl")
    env = {**os.environ, "PIPX_HOME": str(work / "pipx"), "PIPX_BIN_DIR": str(work / "bin")}
    result = subprocess.run([pipx, "install", str(wheel)], env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert result.returncode == 0, f"pipx install failed: {result.stdout}\n{result.stderr}"
    return work / "bin", wheel, _data_files(source)


def run(binary: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # Outside the repository, with no PYTHONPATH: only the installed package can answer.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(binary), *argv], capture_output=True, text=True, timeout=60, cwd="/", env=env)


def test_the_installed_clis_print_their_version_and_help(installed: tuple[Path, Path, set[str]]) -> None:
    bin_dir, wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        metadata_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        version = email.message_from_bytes(archive.read(metadata_name))["Version"]
    assert run(bin_dir / "l2mesh", "--version").stdout.strip() == f"l2mesh {version}"
    assert run(bin_dir / "l2mesh-ctl", "--version").stdout.strip() == f"l2mesh-ctl {version}"
    helped = run(bin_dir / "l2mesh", "--help")
    assert helped.returncode == 0 and "ping" in helped.stdout and "netcheck" in helped.stdout
    assert run(bin_dir / "l2mesh-ctl", "--help").returncode == 0
    script = run(bin_dir / "l2mesh", "completion", "bash").stdout
    subprocess.run(["bash", "-n"], input=script, text=True, check=True, timeout=10)


def test_the_package_data_is_installed(installed: tuple[Path, Path, set[str]]) -> None:
    bin_dir, _, expected = installed
    assert set(PROBE_DATA_FILES) <= expected
    located = run(bin_dir.parent / "pipx" / "venvs" / "l2mesh" / "bin" / "python", "-c",
                  "import l2mesh, pathlib; print(pathlib.Path(l2mesh.__file__).parent.parent)")
    site = Path(located.stdout.strip())
    assert site != REPO
    assert expected <= _data_files(site), f"missing from the install: {sorted(expected - _data_files(site))}"


def test_the_systemd_units_name_the_binaries_where_readme_installs_them_and_verify(installed: tuple[Path, Path, set[str]], tmp_path: Path) -> None:
    bin_dir, _, _ = installed
    readme = (REPO / "README.md").read_text()
    match = re.search(r"PIPX_BIN_DIR=(\S+) pipx install", readme)
    assert match is not None, "README tells how to install with pipx for the systemd units"
    readme_bin_dir = match.group(1)
    assert UNITS
    for unit in UNITS:
        (exec_start,) = re.findall(r"^ExecStart=(\S+)", unit.read_text(), re.M)
        assert Path(exec_start).parent == Path(readme_bin_dir), f"{unit.name}: {exec_start} is not in {readme_bin_dir}"
        assert (bin_dir / Path(exec_start).name).exists(), f"{unit.name}: pipx installs no {Path(exec_start).name}"
        # As installed here: the same unit with this test's bin dir.
        (tmp_path / unit.name).write_text(unit.read_text().replace(f"{readme_bin_dir}/", f"{bin_dir}/"))
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the units' syntax is not verified here")
    result = subprocess.run([analyze, "verify", *(str(tmp_path / u.name) for u in UNITS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
