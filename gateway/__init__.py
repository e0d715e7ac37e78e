"""mqtt-gateway: sensors -> durable SQLite outbox -> MQTT -> deduplicating consumer."""

__version__ = "0.5.0"
