"""Exception tree of the lookup backend.

Messages may be logged, so they never carry a document number or a name.
"""


class BackendError(Exception):
    """Base of every error the backend raises on purpose."""


class StoreError(BackendError):
    """A store operation failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (server down, file missing, pool exhausted)."""


class InvalidRecord(BackendError, ValueError):
    """A record or a lookup key is malformed."""


class ImportFailed(BackendError):
    """A bulk import was rejected; the previous data is left as it was."""
