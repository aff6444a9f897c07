"""Find and read the MRZ of a travel document in a camera frame or image file."""

from kiosk.reader.reader import ReadResult, read_file, read_image

__all__ = ["ReadResult", "read_file", "read_image"]
