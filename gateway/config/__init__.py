"""The YAML configs, read and checked: located YAML, the `MapReader` that reports every
problem with its line, the gateway's and the consumer's configs, broker credentials, and
`check_file`. A driver's own keys are read through the driver table the caller passes."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.config.check import check_file
    from gateway.config.common import BrokerAddress, ConfigError, ListenAddress
    from gateway.config.consumer_config import (
        ConsumerConfig,
        is_postgres_url,
        load_consumer_config,
        mask_passwords,
    )
    from gateway.config.credentials import (
        BrokerCredentials,
        BrokerSecrets,
        CredentialError,
        load_secrets,
    )
    from gateway.config.gateway_config import (
        DeviceConfig,
        DriverTable,
        GatewayConfig,
        load_gateway_config,
    )
    from gateway.config.reader import MapReader, Problem, describe

__all__ = [
    "BrokerAddress",
    "BrokerCredentials",
    "BrokerSecrets",
    "ConfigError",
    "ConsumerConfig",
    "CredentialError",
    "DeviceConfig",
    "DriverTable",
    "GatewayConfig",
    "ListenAddress",
    "MapReader",
    "Problem",
    "check_file",
    "describe",
    "is_postgres_url",
    "load_consumer_config",
    "load_gateway_config",
    "load_secrets",
    "mask_passwords",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "gateway.config.check": ("check_file",),
        "gateway.config.common": ("BrokerAddress", "ConfigError", "ListenAddress"),
        "gateway.config.consumer_config": (
            "ConsumerConfig", "is_postgres_url", "load_consumer_config", "mask_passwords",
        ),
        "gateway.config.credentials": (
            "BrokerCredentials", "BrokerSecrets", "CredentialError", "load_secrets",
        ),
        "gateway.config.gateway_config": (
            "DeviceConfig", "DriverTable", "GatewayConfig", "load_gateway_config",
        ),
        "gateway.config.reader": ("MapReader", "Problem", "describe"),
    })
