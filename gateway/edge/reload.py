"""SIGHUP: what a new version of the config changes in a running gateway (pure logic).

Only the device map is applied live: devices added, removed or changed
(driver options or streams) get their tasks stopped and started. Every
other section (gateway, broker, store, confirmation, metrics) is fixed for
the life of the process: a change there is reported as needing a restart
and the running values are kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gateway.config.gateway_config import GatewayConfig


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload does: the config to run with and the device changes to make."""

    config: GatewayConfig
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    needs_restart: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """True when no device changes."""
        return not (self.added or self.removed or self.changed)


def _fixed_sections(config: GatewayConfig) -> dict[str, object]:
    return {
        "gateway": (config.gateway_id, config.state_dir, config.summary_interval),
        "broker": config.broker,
        "store": config.store,
        "confirmation": (config.confirmation, config.confirmation_timeout),
        "metrics": config.metrics,
    }


def plan_reload(running: GatewayConfig, new: GatewayConfig) -> ReloadPlan:
    """The running config with `new`'s devices, and what else would need a restart."""
    old_devices = {d.id: d for d in running.devices}
    new_devices = {d.id: d for d in new.devices}
    added = tuple(d for d in new_devices if d not in old_devices)
    removed = tuple(d for d in old_devices if d not in new_devices)
    changed = tuple(d for d in new_devices if d in old_devices and new_devices[d] != old_devices[d])
    old_fixed, new_fixed = _fixed_sections(running), _fixed_sections(new)
    restart = tuple(name for name in old_fixed if old_fixed[name] != new_fixed[name])
    return ReloadPlan(dataclasses.replace(running, devices=new.devices), added, removed, changed,
                      restart)
