"""Device drivers: one module per transport, registered in `devices.registry`."""
