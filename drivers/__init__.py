"""Capture drivers: cameras, serial document readers, folders and a simulator.

Create one from its configuration section with `create_driver`, start it,
and read `ImageCaptured`, `MrzLinesRead` and `StatusChanged` events from
`driver.events` (a queue) or a callback.
"""

from __future__ import annotations

from drivers.base import Driver, EventCallback, RawListener
from drivers.errors import (
    DeviceNotFoundError,
    DeviceOpenError,
    DriverConfigError,
    DriverError,
    ProtocolError,
)
from drivers.events import (
    DeviceState,
    DriverEvent,
    ImageCaptured,
    MrzLinesRead,
    StatusChanged,
)
from kiosk.config import (
    CameraConfig,
    DriverConfig,
    FolderConfig,
    SerialConfig,
    SimulatorConfig,
)


def create_driver(
    config: DriverConfig, on_event: EventCallback | None = None
) -> Driver:
    """Create (but do not start) the driver a `[drivers.NAME]` section describes."""
    # Imported here so that using one driver does not load the others'
    # dependencies (OpenCV video I/O, pyserial).
    if isinstance(config, SerialConfig):
        from drivers.serial_scanner import SerialScanner

        return SerialScanner(config, on_event)
    if isinstance(config, CameraConfig):
        from drivers.camera import CameraDriver

        return CameraDriver(config, on_event)
    if isinstance(config, FolderConfig):
        from drivers.folder import FolderDriver

        return FolderDriver(config, on_event)
    if isinstance(config, SimulatorConfig):
        from drivers.simulator import SimulatedScanner

        return SimulatedScanner(config, on_event)
    raise DriverConfigError(
        f"no driver for configuration type {type(config).__name__}; "
        "use camera, serial, folder or simulator"
    )


__all__ = [
    "DeviceNotFoundError",
    "DeviceOpenError",
    "DeviceState",
    "Driver",
    "DriverConfigError",
    "DriverError",
    "DriverEvent",
    "EventCallback",
    "ImageCaptured",
    "MrzLinesRead",
    "ProtocolError",
    "RawListener",
    "StatusChanged",
    "create_driver",
]
