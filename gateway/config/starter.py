"""`mqtt-gateway init`: a commented starter config for one driver, or for the consumer.

Each text is a complete config `check` accepts as it is; the comments say what
to change. Pure text; the command line writes it (never over an existing file).
"""

from __future__ import annotations

HEADER = """\
# mqtt-gateway config written by `mqtt-gateway init --driver {driver}`.
# Edit what the comments point at, then:  mqtt-gateway check --config {path}
# Reference: docs/operations.md and README.md, section "Configuration".
version: 1
gateway:
  id: my-gateway              # letters, digits, '-', '_'; part of every topic
  state_dir: ./state          # the SQLite store (outbox.sqlite) lives here
  summary_interval: 1m        # a one-line summary in the log when something changed
broker:
  url: mqtt://127.0.0.1:1883  # mqtts://host:8883 for TLS
  topic_prefix: gw/{{gateway}}  # readings go to gw/my-gateway/{{device}}/{{stream}}
  # username: edge
  # password_file: broker-password   # beside this file, or from systemd LoadCredential=
store:
  durability: normal          # full: fsync every commit (survives power cuts, more writes)
  max_bytes: 64MiB            # when full, new durable readings are refused and counted
devices:
"""

DEVICES = {
    "simulator": """\
  - id: climate
    driver: simulator         # simulated readings: try the whole path without hardware
    interval: 5s
    streams:
      - name: temperature
        field: temp_c
        unit: "°C"
        delivery: at-least-once   # at-most-once | at-least-once | exactly-once
""",
    "serial": """\
  # One JSON object per line, e.g. {"temp_c": 21.5}
  - id: climate
    driver: serial
    port: /dev/ttyUSB0        # better a stable name: ls /dev/serial/by-id/
    baudrate: 9600
    format: json              # json | csv (with columns: [...]) | kv (key=value pairs)
    streams:
      - name: temperature
        field: temp_c
        unit: "°C"
        delivery: at-least-once   # at-most-once | at-least-once | exactly-once
""",
    "modbus": """\
  # Modbus RTU slaves on one RS-485 bus (extra: pip install 'mqtt-gateway[modbus]')
  - id: meter
    driver: modbus
    port: /dev/ttyUSB0
    baudrate: 9600
    parity: even              # none | even | odd
    slave: 1                  # the slave address of the registers below
    interval: 10s             # how often they are polled
    registers:
      - field: voltage_v
        table: input          # holding | input | coil | discrete
        address: 0            # 0-based wire address (register 30001 of the manual)
        type: float32         # int16 | uint16 | int32 | uint32 | float32
    streams:
      - name: voltage
        field: voltage_v
        unit: V
        delivery: at-least-once
""",
    "gpio": """\
  # One GPIO input line (extra: pip install 'mqtt-gateway[gpio]'; group gpio)
  - id: door
    driver: gpio
    chip: /dev/gpiochip0
    line: 17                  # offset on the chip, or a line name such as GPIO17
    mode: edges               # edges | level | counter
    edge: both                # rising | falling | both
    bias: pull-up             # as-is | pull-up | pull-down | disabled
    debounce: 20ms
    field: closed
    streams:
      - name: closed
        delivery: exactly-once
""",
    "nmea": """\
  # An NMEA 0183 GPS receiver (extra: pip install 'mqtt-gateway[gps]'); USB ones are ttyACM
  - id: gps
    driver: nmea
    port: /dev/ttyACM0
    baudrate: 9600            # 4800 is the NMEA default; most modern receivers use 9600
    streams:
      - name: latitude
        field: latitude_deg
        unit: "°"
        delivery: at-least-once
        min_interval: 10s     # at most one position every 10 s
      - name: longitude
        field: longitude_deg
        unit: "°"
        delivery: at-least-once
        min_interval: 10s
""",
    "w1": """\
  # DS18B20 probes on the 1-Wire bus (dtoverlay=w1-gpio); ls /sys/bus/w1/devices/
  - id: soil
    driver: w1
    interval: 30s             # each probe takes up to 750 ms per read
    probes:
      - id: 28-0316a2795aff   # the directory name under /sys/bus/w1/devices
        field: bed1_temp_c
    streams:
      - name: bed1
        field: bed1_temp_c
        unit: "°C"
        delivery: at-least-once
        deadband: 0.2         # report a change of more than 0.2 °C...
        max_interval: 15m     # ...and at least every 15 minutes
""",
    "bme280": """\
  # A Bosch BME280 on I2C (extra: pip install 'mqtt-gateway[i2c]'; group i2c;
  # dtparam=i2c_arm=on; find the address with i2cdetect -y 1)
  - id: air
    driver: bme280
    bus: 1                    # /dev/i2c-1
    address: 0x76             # 0x76 (SDO to ground) or 0x77
    interval: 1m
    streams:
      - name: temperature
        field: temperature_c
        unit: "°C"
        delivery: at-least-once
      - name: humidity
        field: humidity_pct
        unit: "%"
        delivery: at-least-once
""",
}
DRIVERS = tuple(DEVICES)

CONSUMER = """\
# mqtt-gateway consumer config written by `mqtt-gateway init --consumer`.
# Edit what the comments point at, then:  mqtt-gateway check --config {path}
version: 1
broker:
  url: mqtt://127.0.0.1:1883
  client_id: consumer-1       # stable: the broker keeps this session's queue while it is down
  subscribe: gw/#             # the gateways' topic_prefix, with /#
  # username: cloud
  # password_file: broker-password
database: ./consumer.sqlite   # a SQLite file, or postgresql://user@host/db
commit_interval: 100ms        # messages are acknowledged after the commit that stored them
commit_batch: 500
"""


def starter(driver: str | None, consumer: bool, path: str) -> str:
    """The starter config text: the consumer's, or a gateway's with one device of `driver`
    (the simulator when None). `path` is where it goes (named in its comments). Its state
    paths are relative (./state, ./consumer.sqlite), as the shipped examples'."""
    if consumer:
        return CONSUMER.format(path=path)
    name = driver or "simulator"
    return HEADER.format(driver=name, path=path) + DEVICES[name]
