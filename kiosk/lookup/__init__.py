"""Clients that check a document against the list of reported documents."""

from kiosk.lookup.base import BackendState, BackendStatus, LookupClient

__all__ = ["BackendState", "BackendStatus", "LookupClient"]
