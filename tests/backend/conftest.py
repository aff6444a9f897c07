"""Fixtures for the backend tests: stores of both kinds and CSV files.

PostgreSQL tests use the server named by KIOSK_TEST_PG_URL (default: the
local server, user postgres, trust authentication). Each test gets its own
schema, dropped afterwards. Without a reachable server the tests skip,
except when CI=true, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from backend.store import Store, open_store

PG_URL = os.environ.get(
    "KIOSK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pg_reachable() -> str | None:
    """Return None when the test server answers, else the reason it does not."""
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_URL} is not reachable: {exc}"
    return None


def require_pg() -> None:
    reason = pg_reachable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """URL of a PostgreSQL store in a fresh schema, dropped after the test."""
    require_pg()
    schema = f"kiosk_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{separator}schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """URL of a freshly created PostgreSQL database, dropped after the test."""
    require_pg()
    name = f"kiosk_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_URL.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()
