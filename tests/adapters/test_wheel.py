"""The package as users install it: the sdist, the wheel built from that sdist, and the
wheel installed into a fresh venv outside the source tree.

The sdist is made from a copy of the checkout without what builds leave behind (an
old egg-info's SOURCES.txt would put files in the sdist that MANIFEST.in does not
name). Nothing is fetched: the sdist is made by setuptools' build backend, the
wheel by `pip wheel --no-build-isolation` (this venv's setuptools, which `make`
installs with the test extra), and the wheel goes into the new venv with
`--no-deps --no-index`. The new venv finds the runtime libraries through a .pth
file naming this venv's site-packages: a .pth line only adds a path, so this
venv's editable install (its own .pth hook) stays inactive there, and `gateway`
comes from the wheel.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from gateway import __version__
from gateway.core.extras import EXTRAS
from gateway.ops.install import CONFIGS, DOC_DIR, SYSUSERS, UNITS
from tests.support.procs import REPO

pytestmark = pytest.mark.adapter

HARDWARE = {"psycopg", "gpiod", "pymodbus", "smbus2", "pynmeagps"}
LEFT_BEHIND = (".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", ".*_cache",
               ".hypothesis", "state", "consumer.sqlite*")
PLAIN = {"paho-mqtt", "pyserial", "pyserial-asyncio-fast", "pyyaml", "sqlite-utils",
         "prometheus-client"}


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist of the checkout, and the wheel built from the unpacked sdist."""
    out = tmp_path_factory.mktemp("dist")
    checkout = out / "checkout"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(*LEFT_BEHIND))
    code = "import sys, setuptools.build_meta as b; print(b.build_sdist(sys.argv[1]))"
    name = run(sys.executable, "-c", code, out, cwd=checkout).stdout.strip().splitlines()[-1]
    sdist = out / name
    with tarfile.open(sdist) as tar:
        tar.extractall(out / "unpacked", filter="data")
    tree = out / "unpacked" / name.removesuffix(".tar.gz")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
        "--check-build-dependencies", "-q", "-w", out / "wheels", tree, cwd=out)
    wheels = list((out / "wheels").glob("mqtt_gateway-*.whl"))
    assert len(wheels) == 1, wheels
    return Built(sdist, wheels[0])


def shipped_in_checkout() -> list[str]:
    names = [f"systemd/{unit}" for unit in UNITS] + [f"systemd/sysusers.d/{SYSUSERS}"]
    names += [f"config/{p.name}" for p in sorted((REPO / "config").glob("*.yaml"))]
    names += [f"docs/{p.name}" for p in sorted((REPO / "docs").glob("*.md"))]
    return [*names, "README.md", "LICENSE"]


def test_the_sdist_and_the_wheel_carry_units_configs_and_docs(built: Built) -> None:
    with tarfile.open(built.sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    with zipfile.ZipFile(built.wheel) as wheel:
        in_wheel = set(wheel.namelist())
    for name in shipped_in_checkout():
        assert name in in_sdist, name
        assert f"gateway/ops/shipped/{name}" in in_wheel, name
    assert {"setup.py", "MANIFEST.in", "pyproject.toml"} <= in_sdist
    assert f"mqtt_gateway-{__version__}.dist-info/licenses/LICENSE" in in_wheel
    assert not any(name.startswith(("tests/", "bench/")) for name in in_wheel)


def test_the_plain_install_pulls_no_hardware_library_and_each_extra_its_own(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(wheel.read(name).decode())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    requires = [Requirement(text) for text in metadata.get_all("Requires-Dist") or []]
    assert {r.name.lower() for r in requires if r.marker is None} == PLAIN
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert extras == {extra.name for extra in EXTRAS} | {"test"}
    for extra in EXTRAS:
        wanted = [r.name for r in requires
                  if r.marker is not None and r.marker.evaluate({"extra": extra.name})]
        assert wanted == [extra.library], (extra, wanted)
    psycopg = [r for r in requires if r.name == "psycopg"]
    assert psycopg and all(r.marker is not None and "extra" in str(r.marker) for r in psycopg)
    assert psycopg[0].extras == {"binary"}
    test = [r for r in requires if r.marker is not None and r.marker.evaluate({"extra": "test"})]
    assert any(r.name == "mqtt-gateway" and r.extras == {e.name for e in EXTRAS} for r in test)


def test_the_wheel_installed_outside_the_tree_installs_the_service(
        built: Built, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin/python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q",
        built.wheel, cwd=tmp_path)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                    cwd=tmp_path, env=env).stdout.strip())
    (site / "runtime-libraries.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = run(python, "-c", "import gateway.ops.install as m; print(m.__file__); "
                "print(m.source_dir())", cwd=tmp_path, env=env).stdout.splitlines()
    assert where == [str(site / "gateway/ops/install.py"), str(site / "gateway/ops/shipped")]

    script = venv / "bin/mqtt-gateway"
    root = tmp_path / "root"
    dry = run(script, "install-service", "--root", root, "--dry-run", cwd=tmp_path, env=env)
    assert "would write" in dry.stdout and not root.exists()
    run(script, "install-service", "--root", root, cwd=tmp_path, env=env)
    for unit in UNITS:
        text = (root / "etc/systemd/system" / unit).read_text()
        assert f"\nExecStart={script} " in text
        assert text.replace(str(script), "/usr/local/bin/mqtt-gateway") == \
            (REPO / "systemd" / unit).read_text()
    assert (root / "etc/sysusers.d" / SYSUSERS).read_text() == \
        (REPO / "systemd/sysusers.d" / SYSUSERS).read_text()
    for name in CONFIGS:
        assert "/var/lib/mqtt-gateway" in (root / "etc/mqtt-gateway" / name).read_text()
    assert (root / DOC_DIR / "README.md").read_text() == (REPO / "README.md").read_text()
    check = run(script, "check", "--config", root / "etc/mqtt-gateway/gateway.yaml",
                cwd=tmp_path, env=env)
    assert "valid gateway config" in check.stdout
