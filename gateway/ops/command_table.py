"""The table of the command line: every command, its options and what follows each, its
help text and examples. The parser (gateway/cli.py), its --help and the shell completion
scripts (gateway/ops/completion.py) are all built from it. Pure data.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config.starter import DRIVERS as STARTER_DRIVERS
from gateway.ops.completion import DIR, FILE, FLAG, Command, Option, Spec
from gateway.ops.install import DEFAULT_USER

ETC = Path("/etc/mqtt-gateway")
GATEWAY_DEFAULTS = (ETC / "gateway.yaml", Path("gateway.yaml"))
CONSUMER_DEFAULTS = (ETC / "consumer.yaml", Path("consumer.yaml"))
# check and status take either kind: a host running only the consumer has only its config.
DEFAULT_CONFIGS: dict[str, tuple[Path, ...]] = {
    "gateway": GATEWAY_DEFAULTS, "consumer": CONSUMER_DEFAULTS,
    "either": GATEWAY_DEFAULTS + CONSUMER_DEFAULTS}
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
GATEWAY_CONFIG = Option("--config", FILE, "the YAML config file (default: "
                        "/etc/mqtt-gateway/gateway.yaml, else ./gateway.yaml)")
EITHER_CONFIG = Option("--config", FILE, "a gateway or consumer config file (default: the "
                       "first of /etc/mqtt-gateway/gateway.yaml, ./gateway.yaml, "
                       "/etc/mqtt-gateway/consumer.yaml, ./consumer.yaml)")
CONSUMER_CONFIG = Option("--config", FILE, "the consumer's YAML config file (default: "
                         "/etc/mqtt-gateway/consumer.yaml, else ./consumer.yaml)")
ROOT = Option("--root", DIR, "install under this directory instead of / (packaging, tests)")
DRY_RUN = Option("--dry-run", FLAG, "print what would be done and change nothing")
LOG_LEVEL = Option("--log-level", LEVELS, "the lowest level logged (default INFO)")

# Every command: what it does, its options, and examples (the --help epilog).
SPEC: Spec = (
    Command("run", "run the gateway in the foreground (what systemd runs)",
            (GATEWAY_CONFIG, LOG_LEVEL)),
    Command("check", "validate a gateway or consumer config and print every problem",
            (EITHER_CONFIG,)),
    Command("status", "show the gateway's store (backlog, seqs, epoch, drops, size), or "
            "with a consumer config what the consumer stored per stream",
            (EITHER_CONFIG, Option("--json", FLAG, "print JSON instead of text"))),
    Command("consume", "run the cloud-side deduplicating consumer",
            (CONSUMER_CONFIG, LOG_LEVEL)),
    Command("init", "write a commented starter config (never over an existing file)",
            (Option("--driver", STARTER_DRIVERS, "the driver of its one device (default "
                    "simulator)"),
             Option("--consumer", FLAG, "a consumer config instead of a gateway config")),
            FILE),
    Command("install-service", "install the systemd units, the service user and example "
            "configs",
            (ROOT, DRY_RUN,
             Option("--user", ("mqtt-gateway",), f"the service user (default {DEFAULT_USER})"),
             Option("--exec", FILE, "the mqtt-gateway program the units run (default: this "
                    "installation's script; not under /tmp, /var/tmp, /home, /root or "
                    "/run/user, which the service cannot see)"),
             Option("--source", DIR, "a source checkout holding systemd/ and config/ "
                    "(default: the copies inside the installed package)"))),
    Command("uninstall-service", "stop and disable the services, remove the units (config, "
            "state and user stay)", (ROOT, DRY_RUN)),
    Command("completion", "print a shell completion script", (), ("bash", "zsh")),
)

EXAMPLES = {
    "run": "  mqtt-gateway run --config config/gateway.yaml --log-level DEBUG\n"
           "  systemctl start mqtt-gateway          (the service runs this)",
    "check": "  mqtt-gateway check                    (the installed config)\n"
             "  mqtt-gateway check --config consumer.yaml\n"
             "prints every problem with its line; warnings (a serial port absent now, a "
             "state_dir\nnot writable) do not fail it. Exit 0 valid, 1 problems.",
    "status": "  sudo -u mqtt-gateway /usr/local/bin/mqtt-gateway status\n"
              "  mqtt-gateway status --config consumer.yaml --json",
    "consume": "  mqtt-gateway consume --config config/consumer.yaml",
    "init": "  mqtt-gateway init --driver serial gateway.yaml\n"
            "  mqtt-gateway init --consumer consumer.yaml\n"
            "  sudo mqtt-gateway init --driver bme280 /etc/mqtt-gateway/gateway.yaml\n"
            f"drivers: {', '.join(STARTER_DRIVERS)}.\nA file written into "
            "/etc/mqtt-gateway keeps its state under /var/lib/mqtt-gateway.",
    "install-service": "  sudo /opt/mqtt-gateway/bin/mqtt-gateway install-service\n"
                       "  mqtt-gateway install-service --root pkgroot --exec "
                       "/usr/bin/mqtt-gateway",
    "uninstall-service": "  sudo /opt/mqtt-gateway/bin/mqtt-gateway uninstall-service",
    "completion": '  eval "$(mqtt-gateway completion bash)"        (in ~/.bashrc)\n'
                  "  mqtt-gateway completion zsh > ~/.zfunc/_mqtt-gateway",
}
