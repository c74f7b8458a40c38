"""Serial port naming: stable by-id paths and readable labels."""

from __future__ import annotations

import os
from pathlib import Path

import serialx

BY_ID = "/dev/serial/by-id"


def serial_by_id(device: str, by_id_dir: str = BY_ID) -> str:
    """The ``/dev/serial/by-id`` link of ``device``, which survives reboots and re-plugging.

    Returns ``device`` unchanged when it has no such link (or is a URL).
    """
    if "://" in device or not Path(by_id_dir).is_dir():
        return device
    real = os.path.realpath(device)
    for entry in os.scandir(by_id_dir):
        if entry.is_symlink() and os.path.realpath(entry.path) == real:
            return entry.path
    return device


def port_label(port: serialx.SerialPortInfo) -> str:
    """``/dev/ttyUSB0 - FT232R USB UART - FTDI (0403:6001)``."""
    parts = [port.device]
    if port.product:
        parts.append(port.product)
    if port.manufacturer:
        parts.append(port.manufacturer)
    label = " - ".join(parts)
    if port.vid is not None and port.pid is not None:
        label += f" ({port.vid:04X}:{port.pid:04X})"
    if port.serial_number:
        label += f", s/n {port.serial_number}"
    return label
