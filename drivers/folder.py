"""A driver that reads documents from files, for testers and demonstrations.

Sources: a list of files, a glob pattern, or a watched folder whose new files
are read once each, in order of arrival. Image files become ImageCaptured
events; .txt and .mrz files hold MRZ lines (documents separated by blank
lines) and become MrzLinesRead events.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from drivers.base import Driver, EventCallback
from drivers.events import DeviceState, ImageCaptured, MrzLinesRead
from drivers.images import ImageIncomplete, ImageTooLarge, decode_image_file
from drivers.specimens import parse_mrz_file
from kiosk.config import FolderConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
TEXT_SUFFIXES = frozenset({".txt", ".mrz"})
# Names that editors and copy tools use while a file is still being written.
_PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", "~")


@dataclass(slots=True)
class _Candidate:
    size: int
    mtime_ns: int
    # Monotonic time since which size and mtime have not changed.
    unchanged_since: float


class FolderDriver(Driver):
    delivers_images = True
    delivers_text = True

    def __init__(
        self, config: FolderConfig, on_event: EventCallback | None = None
    ) -> None:
        super().__init__(config.name or "folder", on_event)
        self.config = config
        self.files_read = 0

    def _run(self) -> None:
        if self.config.watch:
            self._watch(Path(self.config.watch))
            return
        if self.config.files:
            paths = [Path(p) for p in self.config.files]
        else:
            paths = [Path(p) for p in sorted(glob.glob(self.config.glob))]
            if not paths:
                self.emit_status(
                    DeviceState.ERROR, f"no file matches {self.config.glob!r}"
                )
                return
        self.emit_status(DeviceState.CONNECTED, f"{len(paths)} files to read")
        for index, path in enumerate(paths):
            if index and self._stop_event.wait(self.config.poll_interval_s):
                return
            if self._stop_event.is_set():
                return
            self.read_file(path)
        self.emit_status(DeviceState.DISCONNECTED, f"all {len(paths)} files read")

    def read_file(self, path: Path) -> bool:
        """Emit the documents in one file.

        An unreadable file is logged and skipped, and False is returned so a
        watcher can try it again once the file changes.
        """
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            try:
                image = decode_image_file(path)
            except ImageTooLarge as exc:
                # Counted as read: the same file will not get smaller.
                log.warning("driver %s: image file skipped: %s", self.name, exc)
                self.emit_status(
                    DeviceState.ERROR, f"{exc}; send a smaller image of the document"
                )
                return True
            except (OSError, ImageIncomplete) as exc:
                # Possibly still being written: the watcher tries it again
                # once its size or mtime changes.
                log.warning("driver %s: cannot read image file: %s", self.name, exc)
                return False
            self.files_read += 1
            log.info("driver %s: image file %s read", self.name, path.name)
            self.emit(ImageCaptured(image, self.name))
        elif suffix in TEXT_SUFFIXES:
            try:
                text = path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                log.warning(
                    "driver %s: cannot read MRZ file %s: %s", self.name, path, exc
                )
                return False
            self.files_read += 1
            documents = parse_mrz_file(text)
            log.info(
                "driver %s: %d MRZ documents in %s",
                self.name,
                len(documents),
                path.name,
            )
            for lines in documents:
                raw = "\n".join(lines).encode("ascii")
                self.emit(MrzLinesRead(lines, raw, self.name))
        else:
            log.info("driver %s: skipped %s (unknown file type)", self.name, path.name)
        return True

    def _watch(self, folder: Path) -> None:
        seen: set[str] = set()
        # Files that could not be read, with the size and mtime they had then.
        # A writer that pauses for longer than stable_s leaves a partial file,
        # which is read again once its size or mtime changes.
        failed: dict[str, tuple[int, int]] = {}
        candidates: dict[str, _Candidate] = {}
        connected: bool | None = None
        first_scan = True
        while not self._stop_event.is_set():
            try:
                entries = _list_files(folder)
            except OSError as exc:
                if connected is not False:
                    self.emit_status(
                        DeviceState.DISCONNECTED, f"cannot list folder {folder}: {exc}"
                    )
                    connected = False
                self._stop_event.wait(self.config.poll_interval_s)
                continue
            if connected is not True:
                self.emit_status(DeviceState.CONNECTED, f"watching {folder}")
                connected = True
            if first_scan and not self.config.include_existing:
                seen.update(entries)
            first_scan = False
            for name in list(failed):
                stat = entries.get(name)
                if stat is None or (stat.st_size, stat.st_mtime_ns) != failed[name]:
                    del failed[name]
            for path in self._ready_files(entries, seen | failed.keys(), candidates):
                if self._stop_event.is_set():
                    return
                if self.read_file(path):
                    seen.add(path.name)
                else:
                    stat = entries[path.name]
                    failed[path.name] = (stat.st_size, stat.st_mtime_ns)
            self._stop_event.wait(self.config.poll_interval_s)

    def _ready_files(
        self,
        entries: dict[str, os.stat_result],
        seen: set[str],
        candidates: dict[str, _Candidate],
    ) -> list[Path]:
        """Return new files unchanged for stable_s, oldest first."""
        now = time.monotonic()
        for name in list(candidates):
            if name not in entries:
                del candidates[name]
        ready: list[tuple[int, str]] = []
        for name, stat in entries.items():
            if name in seen:
                continue
            previous = candidates.get(name)
            if (
                previous is None
                or previous.size != stat.st_size
                or previous.mtime_ns != stat.st_mtime_ns
            ):
                candidates[name] = _Candidate(stat.st_size, stat.st_mtime_ns, now)
                continue
            if (
                stat.st_size > 0
                and now - previous.unchanged_since >= self.config.stable_s
            ):
                ready.append((stat.st_mtime_ns, name))
                del candidates[name]
        return [Path(self.config.watch) / name for _, name in sorted(ready)]


def _list_files(folder: Path) -> dict[str, os.stat_result]:
    entries: dict[str, os.stat_result] = {}
    with os.scandir(folder) as scan:
        for entry in scan:
            if entry.name.startswith(".") or entry.name.endswith(_PARTIAL_SUFFIXES):
                continue
            try:
                if entry.is_file():
                    entries[entry.name] = entry.stat()
            except FileNotFoundError:
                continue
    return entries
