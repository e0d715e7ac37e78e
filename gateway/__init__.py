"""mqtt-gateway: sensors -> durable SQLite outbox -> MQTT -> deduplicating consumer."""

__version__ = "0.1.0"
