"""Exception tree of the kiosk package.

Messages may reach a log, so they never contain a name, a document number or
an MRZ line: quote lengths, positions and file names instead.
"""


class KioskError(Exception):
    """Base of every error the kiosk raises on purpose."""


class MRZError(KioskError, ValueError):
    """MRZ text is malformed: wrong line count, length or characters."""


class ImageError(KioskError):
    """An image cannot be read or decoded."""


class ReaderError(KioskError):
    """The MRZ reader failed on a valid image (OCR engine missing or crashed)."""


class ConfigError(KioskError, ValueError):
    """The kiosk configuration is invalid."""


class LookupFailed(KioskError):
    """A lookup could not be made; callers turn this into an UNKNOWN result."""
