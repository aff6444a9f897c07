"""Exception tree of the drivers package.

Messages may reach a log, so they never quote MRZ text or image content: they
name ports, paths, byte positions and lengths instead.
"""


class DriverError(Exception):
    """Base of every error a capture driver raises on purpose."""


class DriverConfigError(DriverError, ValueError):
    """A driver section names an unknown type or an unusable setting."""


class DeviceNotFoundError(DriverError):
    """No device matches the configured path, by-id link, index or USB id."""


class DeviceOpenError(DriverError):
    """A device exists but cannot be opened (busy, no permission, unplugged)."""


class ProtocolError(DriverError, ValueError):
    """Bytes do not form a frame of the configured protocol."""


class DriverStateError(DriverError, RuntimeError):
    """A driver method was called in the wrong state (for example start twice)."""
