"""Loading, validating and saving kiosk.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import (
    API_KEY_ENV,
    CONFIG_ENV,
    BackendSection,
    CameraConfig,
    FolderConfig,
    KioskConfig,
    SerialConfig,
    SimulatorConfig,
    load_config,
    parse_config,
    parse_usb_id,
    save_config,
)
from kiosk.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(API_KEY_ENV, raising=False)


def test_missing_default_file_gives_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config == KioskConfig()
    assert config.kiosk.store_path == Path("var/kiosk.sqlite3")
    assert config.backend.url is None


def test_missing_explicit_file_is_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_env_names_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[backend]\nurl = "http://127.0.0.1:9"\n')
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert load_config(None).backend.url == "http://127.0.0.1:9"


def test_example_file_loads() -> None:
    config = load_config(REPO / "kiosk.example.toml")
    assert config.active_driver == "desk-reader"
    reader = config.driver()
    assert isinstance(reader, SerialConfig)
    assert reader.protocol == "stx-etx"
    assert reader.name == "desk-reader"
    assert isinstance(config.drivers["camera"], CameraConfig)
    assert isinstance(config.drivers["drop-folder"], FolderConfig)
    assert isinstance(config.drivers["simulated"], SimulatorConfig)


def test_api_key_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[backend]\napi_key = "from-file"\n')
    assert load_config(path).backend.api_key == "from-file"
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    config = load_config(path)
    assert config.backend.api_key == "from-env"
    assert config.backend.api_key_source == "env"
    assert "from-env" not in repr(config)


def test_saved_file_omits_env_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "secret-env-key")
    config = load_config(REPO / "kiosk.example.toml")
    out = tmp_path / "out.toml"
    save_config(config, out)
    assert "secret-env-key" not in out.read_text()


def test_save_load_round_trip(tmp_path: Path) -> None:
    config = load_config(REPO / "kiosk.example.toml")
    out = tmp_path / "sub" / "saved.toml"
    save_config(config, out)
    again = load_config(out)
    assert again == config
    assert again.drivers == config.drivers


def test_round_trip_odd_values(tmp_path: Path) -> None:
    config = KioskConfig(
        backend=BackendSection(url='http://127.0.0.1/"q"\\é', api_key="k\n1"),
        drivers={
            "weird name": FolderConfig(name="weird name", files=["a b.png", "ü.txt"]),
        },
    )
    out = tmp_path / "x.toml"
    save_config(config, out)
    again = load_config(out)
    assert again.backend.url == config.backend.url
    assert again.backend.api_key == "k\n1"
    assert again.drivers == config.drivers


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[kiosk]\nstore_pth = 'x'\n", ["store_pth", "store_path"]),
        ("[backnd]\n", ["backnd", "backend"]),
        ("[backend]\ntimeout_s = 'fast'\n", ["timeout_s", "'fast'", "number"]),
        ("[backend]\ntimeout_s = -1\n", ["timeout_s", "-1", "at least"]),
        (
            "[drivers.a]\ntype = 'serial'\nport = '/dev/x'\nparity = 'evn'\n",
            ["parity", "'evn'", "'even'"],
        ),
        (
            "[drivers.a]\ntype = 'serial'\nport = '/dev/x'\nprotocol = 'stxetx'\n",
            ["protocol", "'stxetx'", "'stx-etx'"],
        ),
        (
            "[drivers.a]\ntype = 'serial'\nport = '/dev/x'\nbaud = 9600\n",
            ["baud", "baudrate"],
        ),
        ("[drivers.a]\ntype = 'camra'\n", ["type", "'camra'", "'camera'"]),
        ("[drivers.a]\nport = 'x'\n", ["missing key 'type'"]),
        ("[drivers.a]\ntype = 'serial'\n", ["exactly one of 'port' and 'usb'"]),
        ("[drivers.a]\ntype = 'serial'\nusb = 'zz:1'\n", ["usb", "'zz:1'", "VID:PID"]),
        ("[drivers.a]\ntype = 'folder'\n", ["exactly one of"]),
        ("[drivers.a]\ntype = 'camera'\nfourcc = 'MJ'\n", ["fourcc", "'MJ'"]),
        ("[drivers.a]\ntype = 'camera'\nwidth = 1.5\n", ["width", "1.5", "whole"]),
        ("[drivers.a]\ntype = 'camera'\nloop = 1\n", ["loop", "true or false"]),
        (
            "[drivers.a]\ntype = 'simulator'\nfaults = ['garbage', 'bad-bc']\n",
            ["faults", "'bad-bc'", "'bad-bcc'"],
        ),
        (
            "active_driver = 'cam'\n[drivers.camera]\ntype = 'camera'\n",
            ["active_driver", "'cam'", "'camera'"],
        ),
        ("[backend\n", ["not valid TOML"]),
        ("backend = 3\n", ["backend must be a table"]),
    ],
)
def test_invalid_config_names_key(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert str(path) in message


def test_api_key_value_never_in_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("[backend]\napi_key = 12345678\n")
    assert "12345678" not in str(caught.value)
    assert "api_key" in str(caught.value)


def test_driver_selection() -> None:
    config = parse_config(
        "[drivers.a]\ntype = 'camera'\n[drivers.b]\ntype = 'camera'\n"
    )
    with pytest.raises(ConfigError, match="active_driver"):
        config.driver()
    assert config.driver("b").name == "b"
    with pytest.raises(ConfigError, match="did you mean 'a'"):
        config.driver("aa")
    with pytest.raises(ConfigError, match=r"no \[drivers.NAME\]"):
        KioskConfig().driver()


def test_values_typed() -> None:
    config = parse_config(
        "[drivers.s]\ntype = 'serial'\nusb = '067B:2303:AB12'\nstopbits = 2\n"
        "[kiosk]\nstore_path = 'x/y.db'\n"
    )
    serial = config.driver()
    assert isinstance(serial, SerialConfig)
    assert serial.stopbits == 2.0
    assert isinstance(serial.stopbits, float)
    assert config.kiosk.store_path == Path("x/y.db")
    assert parse_usb_id(serial.usb) == (0x067B, 0x2303, "AB12")
    assert parse_usb_id("1a86:7523") == (0x1A86, 0x7523, None)


def test_simulator_images_need_image_protocol() -> None:
    with pytest.raises(ConfigError, match="needs protocol"):
        parse_config("[drivers.s]\ntype = 'simulator'\nimages = ['a.png']\n")
    with pytest.raises(ConfigError, match="needs 'images'"):
        parse_config("[drivers.s]\ntype = 'simulator'\nprotocol = 'image'\n")
