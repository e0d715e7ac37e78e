"""The nmea driver reading a GPS receiver played on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import tty
from collections import Counter

from devices.nmea import BAD_CHECKSUM, BAD_NMEA, NmeaOptions, checksum, start
from tests.support.recording_sink import RecordingSink, running
from tests.support.waiting import wait_for


def sentence(body: str) -> bytes:
    return f"${body}*{checksum(body):02X}\r\n".encode()


GGA = sentence("GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,")
RMC = sentence("GPRMC,092750.000,A,5321.6802,N,00630.3372,W,10.00,31.66,280511,,,A")
GSV = sentence("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00")
NO_FIX = sentence("GNGGA,,,,,,0,00,99.99,,,,,,")


def test_sentences_through_a_pty_with_bad_checksums_counted() -> None:
    master, slave = pty.openpty()
    tty.setraw(slave)
    sink = RecordingSink()
    try:
        with running(start("gps", NmeaOptions(port=os.ttyname(slave), baudrate=9600)), sink):
            wait_for(lambda: any(up for up, _ in sink.states), what="the port opened")
            corrupted = GGA.replace(b"5321", b"5322")  # a flipped digit: checksum no longer matches
            os.write(master, GSV + GGA + corrupted + b"garbage\r\n" + RMC[:20])
            os.write(master, RMC[20:] + NO_FIX + b"$GPGGA,1,2\r\n")
            wait_for(lambda: len(sink.fields) >= 3 and sum(sink.reject_counts.values()) >= 3,
                     what="three records and three rejects")
    finally:
        os.close(master)
        os.close(slave)
    assert sink.fields == [
        {"fix_quality": 1, "satellites": 8, "latitude_deg": 53.36133667, "longitude_deg": -6.50562,
         "altitude_m": 61.7, "hdop": 1.03},
        {"fix_valid": True, "latitude_deg": 53.36133667, "longitude_deg": -6.50562,
         "speed_kmh": 18.52, "course_deg": 31.66},
        {"fix_quality": 0, "satellites": 0, "hdop": 99.99},
    ]
    assert sink.reject_counts == Counter({BAD_CHECKSUM: 2, BAD_NMEA: 1})
    assert all(record.partial for record in sink.snapshot()[0])
