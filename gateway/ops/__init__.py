"""Running as a service: systemd notification, watchdog and supervision, journal-friendly
logs, and installing the units. The Prometheus endpoint, `gateway.ops.metrics`, is not
exported here: it is imported only when metrics are on, as it loads prometheus-client."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.ops.install import (
        DEFAULT_USER,
        USER_NAME,
        InstallError,
        apply,
        console_script,
        create_user,
        install_plan,
        next_steps,
        source_dir,
        uninstall_plan,
    )
    from gateway.ops.logs import setup_logging
    from gateway.ops.supervision import Supervision
    from gateway.ops.watchdog import Progress

__all__ = [
    "DEFAULT_USER",
    "USER_NAME",
    "InstallError",
    "Progress",
    "Supervision",
    "apply",
    "console_script",
    "create_user",
    "install_plan",
    "next_steps",
    "setup_logging",
    "source_dir",
    "uninstall_plan",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "gateway.ops.install": (
            "DEFAULT_USER", "USER_NAME", "InstallError", "apply", "console_script", "create_user",
            "install_plan", "next_steps", "source_dir", "uninstall_plan",
        ),
        "gateway.ops.logs": ("setup_logging",),
        "gateway.ops.supervision": ("Supervision",),
        "gateway.ops.watchdog": ("Progress",),
    })
