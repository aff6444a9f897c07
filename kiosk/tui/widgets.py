"""Widgets shared by the kiosk screens."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from kiosk.lookup.base import BackendState, BackendStatus
from kiosk.tui.present import BannerView, Verdict, format_age

_BANNER_CLASSES = [verdict.css_class for verdict in Verdict] + ["waiting", "scanning"]


class ResultBanner(Static):
    """Large verdict banner at the top of the officer screen.

    Besides colour, each verdict has its own border style (set in the
    stylesheet), words and glyph, so it reads the same without colour.
    """

    def show_verdict(self, view: BannerView) -> None:
        text = Text(view.headline, style="bold")
        for line in view.details:
            text.append("\n" + line, style="not bold")
        self._set_state(view.verdict.css_class, text)

    def show_waiting(self, device: str, backend: str) -> None:
        text = Text("●  READY: lay the document on the reader", style="bold")
        text.append(f"\nDevice: {device}", style="not bold")
        text.append(f"\nLookup: {backend}", style="not bold")
        self._set_state("waiting", text)

    def show_scanning(self, source: str) -> None:
        text = Text("…  CHECKING the document", style="bold")
        text.append(f"\nFrom {source}", style="not bold")
        self._set_state("scanning", text)

    def _set_state(self, css_class: str, text: Text) -> None:
        self.remove_class(*_BANNER_CLASSES)
        self.add_class(css_class)
        self.update(text)


def describe_backend(status: BackendStatus | None) -> str:
    """Return the one-line backend state of the status bar and waiting banner."""
    if status is None:
        return "checking the lookup backend…"
    version = status.data_version or "no data"
    if status.state is BackendState.ONLINE:
        text = f"online, data {version}"
    elif status.state is BackendState.OFFLINE:
        text = f"OFFLINE: offline copy {version}, {format_age(status.data_age)} old"
    elif status.state is BackendState.EMBEDDED:
        text = f"embedded list, data {version}"
    else:
        text = f"UNREACHABLE: {status.description}"
    if status.queued_rechecks:
        text += f"; {status.queued_rechecks} queued for re-check"
    return text
