"""The kiosk configuration file, `kiosk.toml`, as typed dataclasses.

The file is read with tomllib and checked on load: an unknown key or a bad
value raises ConfigError naming the key, the value and the nearest valid
choice. A missing file gives the defaults. See kiosk.example.toml.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from kiosk.errors import ConfigError

CONFIG_ENV = "KIOSK_CONFIG"
API_KEY_ENV = "KIOSK_API_KEY"
DEFAULT_CONFIG_PATH = Path("kiosk.toml")
# Keys whose values are never repeated in an error message.
_SECRET_KEYS = frozenset({"api_key"})

DRIVER_TYPES = ("camera", "serial", "folder", "simulator")
PROTOCOLS = ("plain", "stx-etx", "cute", "command", "json", "image")
FAULTS = ("garbage", "bad-bcc", "cut-line", "partial", "wrong-baud")
PARITIES = ("none", "even", "odd", "mark", "space")
FLOW_CONTROLS = ("none", "rtscts", "dsrdtr", "xonxoff")


def _choices(*values: object) -> dict[str, Any]:
    return {"choices": values}


def _range(
    minimum: float | None = None, maximum: float | None = None
) -> dict[str, Any]:
    return {"min": minimum, "max": maximum}


@dataclass(frozen=True, slots=True)
class KioskSection:
    # SQLite file of the embedded lookup store, relative to the working directory.
    store_path: Path = Path("var/kiosk.sqlite3")


@dataclass(frozen=True, slots=True)
class BackendSection:
    # Lookup service URL; None uses the embedded store.
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    # Limit in seconds for one whole check, retries included; past it the
    # result is NOT CHECKED and the check is queued.
    timeout_s: float = field(default=2.0, metadata=_range(0.1, 300))
    # How old the offline copy of the list may be before lookups return UNKNOWN.
    offline_max_age_h: float = field(default=24.0, metadata=_range(0, 24 * 365))
    # Where api_key came from: "file", "env" or None. save_config writes a
    # key from the environment back to no file.
    api_key_source: Literal["file", "env"] | None = field(
        default=None, repr=False, compare=False, metadata={"internal": True}
    )


@dataclass(frozen=True, slots=True)
class DriverConfig:
    """Common part of every `[drivers.NAME]` section."""

    type: ClassVar[str] = ""
    name: str = field(default="", metadata={"internal": True})


@dataclass(frozen=True, slots=True)
class CameraConfig(DriverConfig):
    type: ClassVar[str] = "camera"
    # Camera index ("0"), a /dev/v4l/by-id or /dev/videoN path, a video file,
    # an image-sequence pattern such as "frames/%04d.png", or a folder of images.
    device: str = "0"
    width: int = field(default=1920, metadata=_range(0, 16384))
    height: int = field(default=1080, metadata=_range(0, 16384))
    # Four-character codec asked of the camera; "" leaves the device default.
    fourcc: str = "MJPG"
    fps: float = field(default=0.0, metadata=_range(0, 240))
    # Variance of the Laplacian over the MRZ band (scaled to 640 pixels wide)
    # below which a frame counts as blurred; see drivers.mrz_band.sharpness.
    sharpness_min: float = field(default=300.0, metadata=_range(0))
    # Widest stretch of the MRZ band washed out by glare, as a fraction of its
    # width, above which the frame is not captured.
    glare_max: float = field(default=0.1, metadata=_range(0, 1))
    # Frames the MRZ band must stay still before a capture.
    steady_frames: int = field(default=4, metadata=_range(1, 100))
    # Largest MRZ band movement between steady frames, as a fraction of frame width.
    steady_max_shift: float = field(default=0.01, metadata=_range(0, 1))
    # Frames without an MRZ band after which the document counts as removed.
    removed_frames: int = field(default=6, metadata=_range(1, 1000))
    no_frame_timeout_s: float = field(default=3.0, metadata=_range(0.1, 600))
    frozen_timeout_s: float = field(default=5.0, metadata=_range(0.1, 600))
    reopen_max_s: float = field(default=10.0, metadata=_range(0.1, 600))
    # Play a video file or image sequence again from the start at its end.
    loop: bool = False


@dataclass(frozen=True, slots=True)
class SerialConfig(DriverConfig):
    type: ClassVar[str] = "serial"
    # Device path, such as /dev/ttyUSB0 or a /dev/serial/by-id link.
    port: str = ""
    # Or the USB adapter as "VID:PID" or "VID:PID:SERIAL", hexadecimal ids.
    usb: str = ""
    baudrate: int = field(default=9600, metadata=_range(50, 4_000_000))
    bytesize: int = field(default=8, metadata=_choices(5, 6, 7, 8))
    parity: str = field(default="none", metadata=_choices(*PARITIES))
    stopbits: float = field(default=1, metadata=_choices(1, 1.5, 2))
    flow_control: str = field(default="none", metadata=_choices(*FLOW_CONTROLS))
    exclusive: bool = True
    protocol: str = field(default="plain", metadata=_choices(*PROTOCOLS))
    # stx-etx frames start with SOH, a length, a source and a type byte.
    header: bool = False
    # Frames end with an XOR block check; "auto" is on for cute, off elsewhere.
    bcc: str = field(default="auto", metadata=_choices("auto", "on", "off"))
    # Idle time that ends a document or drops a partial frame.
    frame_timeout_s: float = field(default=0.3, metadata=_range(0.01, 60))
    # command protocol: continuous read, or else poll with a read command.
    continuous: bool = True
    poll_interval_s: float = field(default=1.0, metadata=_range(0.05, 60))
    reconnect_max_s: float = field(default=5.0, metadata=_range(0.1, 600))


@dataclass(frozen=True, slots=True)
class FolderConfig(DriverConfig):
    type: ClassVar[str] = "folder"
    # Image (.jpg, .png, ...) or MRZ text (.txt, .mrz) files, read in order.
    files: list[str] = field(default_factory=list)
    # A glob pattern such as "fixtures/images/*.jpg", read in sorted order.
    glob: str = ""
    # A folder whose new files are read once each, in order of arrival.
    watch: str = ""
    # Read the files already in the watched folder at start.
    include_existing: bool = False
    # Seconds between polls of the watched folder, and between listed files.
    poll_interval_s: float = field(default=0.5, metadata=_range(0.01, 60))
    # A file counts as written when its size and mtime hold still this long.
    stable_s: float = field(default=0.5, metadata=_range(0, 60))


@dataclass(frozen=True, slots=True)
class SimulatorConfig(DriverConfig):
    type: ClassVar[str] = "simulator"
    protocol: str = field(default="stx-etx", metadata=_choices(*PROTOCOLS))
    header: bool = False
    bcc: str = field(default="auto", metadata=_choices("auto", "on", "off"))
    # MRZ text file (documents separated by blank lines); "" uses the
    # built-in ICAO specimens.
    mrz_file: str = ""
    # Image files to send, for the image protocol.
    images: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list, metadata=_choices(*FAULTS))
    interval_s: float = field(default=3.0, metadata=_range(0.05, 3600))
    # Documents to play; 0 plays forever.
    count: int = field(default=0, metadata=_range(0))


DRIVER_CONFIG_TYPES: dict[str, type[DriverConfig]] = {
    cls.type: cls for cls in (CameraConfig, SerialConfig, FolderConfig, SimulatorConfig)
}


@dataclass(frozen=True, slots=True)
class KioskConfig:
    kiosk: KioskSection = field(default_factory=KioskSection)
    backend: BackendSection = field(default_factory=BackendSection)
    drivers: dict[str, DriverConfig] = field(default_factory=dict)
    # Name of the `[drivers.NAME]` section the kiosk uses.
    active_driver: str = ""
    # The file this was loaded from, or None for defaults.
    path: Path | None = field(default=None, compare=False)

    def driver(self, name: str | None = None) -> DriverConfig:
        """Return the driver section `name`, else the active one, else the only one."""
        requested = name or self.active_driver
        if requested:
            if requested not in self.drivers:
                raise ConfigError(_unknown("driver", requested, list(self.drivers)))
            return self.drivers[requested]
        if len(self.drivers) == 1:
            return next(iter(self.drivers.values()))
        if not self.drivers:
            raise ConfigError(
                f"no [drivers.NAME] section in {self.path or 'the configuration'}; "
                "add one (see kiosk.example.toml)"
            )
        raise ConfigError(
            "several drivers are configured and active_driver is not set; "
            f"set it to one of: {', '.join(self.drivers)}"
        )


def config_path(path: Path | None = None) -> Path:
    """Resolve the path: the argument, else $KIOSK_CONFIG, else ./kiosk.toml."""
    if path is not None:
        return path
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_config(path: Path | None = None) -> KioskConfig:
    """Read and validate the configuration; a missing file gives the defaults.

    A path given explicitly (argument or $KIOSK_CONFIG) must exist."""
    explicit = path is not None or bool(os.environ.get(CONFIG_ENV))
    resolved = config_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                f"configuration file {resolved} not found; create it from "
                "kiosk.example.toml or leave the path unset for defaults"
            ) from None
        return _apply_env(KioskConfig())
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {resolved}: {exc}") from exc
    return parse_config(text, source=resolved)


def parse_config(text: str, source: Path | None = None) -> KioskConfig:
    where = str(source) if source else "configuration"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from exc
    _check_keys(data, ("kiosk", "backend", "drivers", "active_driver"), where)
    kiosk = _build(KioskSection, _table(data, "kiosk", where), f"{where}: [kiosk]")
    backend = _build(
        BackendSection, _table(data, "backend", where), f"{where}: [backend]"
    )
    if backend.api_key is not None:
        backend = dataclasses.replace(backend, api_key_source="file")
    if backend.url is not None:
        check_backend_url(backend.url, f"{where}: [backend] url")
    drivers: dict[str, DriverConfig] = {}
    for name, section in _table(data, "drivers", where).items():
        drivers[name] = _build_driver(name, section, where)
    active = data.get("active_driver", "")
    if not isinstance(active, str):
        raise ConfigError(f"{where}: active_driver = {active!r} must be a string")
    if active and active not in drivers:
        raise ConfigError(
            f"{where}: " + _unknown("active_driver", active, list(drivers))
        )
    config = KioskConfig(kiosk, backend, drivers, active, source)
    return _apply_env(config)


def check_backend_url(url: str, context: str) -> None:
    """Raise ConfigError unless `url` is an http:// or https:// URL with a host."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"{context} = {url!r} is not a lookup service URL; expected "
            "http://HOST:PORT or https://HOST:PORT, or no url for the embedded store"
        )


def _apply_env(config: KioskConfig) -> KioskConfig:
    key = os.environ.get(API_KEY_ENV)
    if not key:
        return config
    backend = dataclasses.replace(config.backend, api_key=key, api_key_source="env")
    return dataclasses.replace(config, backend=backend)


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table ([{key}]), not a value")
    return value


def _build_driver(name: str, section: object, where: str) -> DriverConfig:
    context = f"{where}: [drivers.{name}]"
    if not isinstance(section, dict):
        raise ConfigError(f"{context} must be a table")
    kind = section.get("type")
    if kind is None:
        raise ConfigError(
            f"{context}: missing key 'type'; one of {', '.join(DRIVER_TYPES)}"
        )
    if kind not in DRIVER_CONFIG_TYPES:
        raise ConfigError(
            f"{context}: " + _unknown("type", str(kind), list(DRIVER_TYPES))
        )
    values = {k: v for k, v in section.items() if k != "type"}
    config = _build(DRIVER_CONFIG_TYPES[kind], values, context)
    config = dataclasses.replace(config, name=name)
    _check_driver(config, context)
    return config


def _check_driver(config: DriverConfig, context: str) -> None:
    if isinstance(config, SerialConfig):
        if bool(config.port) == bool(config.usb):
            raise ConfigError(f"{context}: set exactly one of 'port' and 'usb'")
        if config.usb:
            parse_usb_id(config.usb, context)
    if isinstance(config, FolderConfig):
        sources = [bool(config.files), bool(config.glob), bool(config.watch)]
        if sum(sources) != 1:
            raise ConfigError(
                f"{context}: set exactly one of 'files', 'glob' and 'watch'"
            )
    if isinstance(config, CameraConfig) and len(config.fourcc) not in (0, 4):
        raise ConfigError(
            f"{context}: fourcc = {config.fourcc!r} must have 4 characters, "
            "such as 'MJPG', or be empty"
        )
    if isinstance(config, SimulatorConfig):
        if config.protocol == "image" and not config.images:
            raise ConfigError(
                f"{context}: the image protocol needs 'images', a file list"
            )
        if config.protocol != "image" and config.images:
            raise ConfigError(
                f"{context}: 'images' needs protocol = \"image\"; "
                "other protocols send MRZ text from 'mrz_file'"
            )


def parse_usb_id(text: str, context: str = "usb") -> tuple[int, int, str | None]:
    """Parse "VID:PID" or "VID:PID:SERIAL" (hexadecimal ids) into its parts."""
    parts = text.split(":", 2)
    try:
        if len(parts) < 2:
            raise ValueError(text)
        vid, pid = int(parts[0], 16), int(parts[1], 16)
    except ValueError:
        raise ConfigError(
            f"{context}: usb = {text!r} is invalid; write hexadecimal "
            "VID:PID or VID:PID:SERIAL, such as '067b:2303'"
        ) from None
    if not (0 <= vid <= 0xFFFF and 0 <= pid <= 0xFFFF):
        raise ConfigError(f"{context}: usb = {text!r} has an id above ffff")
    return vid, pid, parts[2] if len(parts) == 3 else None


def _unknown(key: str, value: str, valid: Sequence[str]) -> str:
    message = f"{key} = {value!r} is unknown"
    close = difflib.get_close_matches(value, valid, n=1, cutoff=0.4)
    if close:
        message += f"; did you mean {close[0]!r}?"
    if valid:
        message += f" Valid: {', '.join(valid)}"
    return message


def _check_keys(data: Mapping[str, Any], valid: Sequence[str], context: str) -> None:
    for key in data:
        if key not in valid:
            message = f"{context}: unknown key {key!r}"
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.4)
            if close:
                message += f"; did you mean {close[0]!r}?"
            raise ConfigError(message + f" Valid keys: {', '.join(valid)}")


_T = typing.TypeVar("_T")


def _public_fields(cls: type[object]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]  # type: ignore[arg-type]


def _build(cls: type[_T], values: Mapping[str, Any], context: str) -> _T:
    fields = _public_fields(cls)
    _check_keys(values, [f.name for f in fields], context)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for spec in fields:
        if spec.name in values:
            kwargs[spec.name] = _convert(
                values[spec.name], hints[spec.name], spec, context
            )
    return cls(**kwargs)


def _convert(value: Any, hint: Any, spec: dataclasses.Field[Any], context: str) -> Any:
    display_value = "<hidden>" if spec.name in _SECRET_KEYS else repr(value)

    def invalid(expected: str) -> ConfigError:
        return ConfigError(
            f"{context}: {spec.name} = {display_value} is invalid: {expected}"
        )

    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        # Optional values: TOML has no null, so a present value is the inner type.
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, list):
            raise invalid('expected a list, such as ["a", "b"]')
        return [_check_scalar(item, str, spec, context, invalid) for item in value]
    return _check_scalar(value, hint, spec, context, invalid)


def _check_scalar(
    value: Any,
    hint: Any,
    spec: dataclasses.Field[Any],
    context: str,
    invalid: Any,
) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise invalid("expected true or false")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid("expected a whole number")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid("expected a number")
        if not math.isfinite(value):
            raise invalid("expected a finite number")
        value = float(value)
    elif hint is str or hint is Path:
        if not isinstance(value, str):
            raise invalid("expected a string in quotes")
        if hint is Path:
            value = Path(value)
    choices = spec.metadata.get("choices")
    if choices is not None and value not in choices:
        valid = [str(c) for c in choices]
        close = difflib.get_close_matches(str(value), valid, n=1, cutoff=0.4)
        hint_text = f"; nearest valid choice: {close[0]!r}" if close else ""
        raise invalid(f"choose one of {', '.join(valid)}{hint_text}")
    minimum, maximum = spec.metadata.get("min"), spec.metadata.get("max")
    if minimum is not None and value < minimum:
        raise invalid(f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise invalid(f"must be at most {maximum}")
    return value


def save_config(config: KioskConfig, path: Path) -> None:
    """Write `config` as TOML; an API key taken from the environment is left out."""
    lines: list[str] = []
    if config.active_driver:
        lines.append(f"active_driver = {_toml_value(config.active_driver)}")
        lines.append("")
    lines += _toml_table("kiosk", config.kiosk)
    backend = config.backend
    if backend.api_key_source == "env":
        backend = dataclasses.replace(backend, api_key=None)
    lines += _toml_table("backend", backend)
    for name, driver in config.drivers.items():
        key = name if _is_bare_key(name) else _toml_value(name)
        lines += _toml_table(f"drivers.{key}", driver, {"type": driver.type})
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("\n".join(lines), encoding="utf-8")
    temporary.replace(path)


def _toml_table(
    header: str, section: object, extra: dict[str, Any] | None = None
) -> list[str]:
    lines = [f"[{header}]"]
    items = dict(extra or {})
    for spec in _public_fields(type(section)):
        items[spec.name] = getattr(section, spec.name)
    for key, value in items.items():
        if value is None:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    lines.append("")
    return lines


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return _toml_value(str(value))
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string: same quotes and escapes.
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} to TOML")


def _is_bare_key(key: str) -> bool:
    return bool(key) and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
