"""Every example config under config/ is one that `mqtt-gateway check` accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.registry import DRIVERS
from gateway.config.check import check_file, problems_in

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SHIPPED = sorted(CONFIG_DIR.glob("*.yaml"))


def test_there_are_shipped_configs() -> None:
    assert SHIPPED, f"no *.yaml under {CONFIG_DIR}"
    assert {path.name for path in SHIPPED} >= {"gateway.yaml", "consumer.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_config_passes_check(path: Path) -> None:
    assert problems_in(path, DRIVERS) == []
    kind, summary = check_file(path, DRIVERS)
    assert kind in ("gateway", "consumer")
    assert summary


def test_the_default_configs_are_of_the_right_kind() -> None:
    assert check_file(CONFIG_DIR / "gateway.yaml", DRIVERS)[0] == "gateway"
    assert check_file(CONFIG_DIR / "consumer.yaml", DRIVERS)[0] == "consumer"
