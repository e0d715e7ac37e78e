"""The serial driver (`port`: a sensor sending json, csv or key=value lines, its port
reopened when it goes away) and what the other drivers on a serial line share: framing,
the line formats, and the `port` and `baudrate` keys."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from devices.serial.framing import LineFramer, first_line
    from devices.serial.line_formats import Fields, LineParser, ParseResult, parser_for
    from devices.serial.port import SerialOptions, read_baudrate, read_lines_forever, read_port

__all__ = [
    "Fields",
    "LineFramer",
    "LineParser",
    "ParseResult",
    "SerialOptions",
    "first_line",
    "parser_for",
    "read_baudrate",
    "read_lines_forever",
    "read_port",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "devices.serial.framing": ("LineFramer", "first_line"),
        "devices.serial.line_formats": ("Fields", "LineParser", "ParseResult", "parser_for"),
        "devices.serial.port": ("SerialOptions", "read_baudrate", "read_lines_forever", "read_port"),
    })
