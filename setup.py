"""Build step of the wheel: the files `mqtt-gateway install-service` installs ride along.

The unit files, the sysusers.d snippet, the example configs and the documentation
stay where they are in the source tree (`systemd/`, `config/`, `README.md`,
`LICENSE`, `docs/`); building the wheel copies them, in the same layout, into the
package as `gateway/ops/shipped/`, where gateway/ops/install.py finds them. An
editable install has no copy: install.py reads the checkout itself. Everything
else is in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("systemd/*.service", "systemd/sysusers.d/*.conf", "config/*.yaml", "README.md",
           "LICENSE", "docs/*.md")
TARGET = Path("gateway", "ops", "shipped")


def shipped_files() -> list[Path]:
    """The files to ship, relative to the source tree."""
    return sorted({path.relative_to(HERE) for pattern in SHIPPED for path in HERE.glob(pattern)})


class BuildPyWithShipped(build_py):
    """`build_py` that also copies the shipped files into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for name in shipped_files():
            target = Path(self.build_lib, TARGET, name)
            self.mkpath(str(target.parent))
            self.copy_file(str(HERE / name), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs: list[str] = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return outputs + [str(Path(self.build_lib, TARGET, name)) for name in shipped_files()]


setup(cmdclass={"build_py": BuildPyWithShipped})
