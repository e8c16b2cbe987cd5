"""Credentials in URLs: what is shown of an RPC or database URL, and what is scrubbed from text."""

from __future__ import annotations

import logging
import string
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.redaction import (
    RedactingFilter,
    redact_db_url,
    redact_rpc_url,
    redact_url,
    redact_urls,
    scrub,
    secret_parts,
)

KEY = "SECRETKEY0123456789abcdef"
RPC = f"https://mainnet.example.io/v3/{KEY}?apikey={KEY}"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (RPC, "https://mainnet.example.io"),
        (f"http://127.0.0.1:8545/{KEY}", "http://127.0.0.1:8545"),
        (f"https://user:{KEY}@node.example:8443/rpc", "https://node.example:8443"),
        (f"https://{KEY}@node.example", "https://node.example"),
        (f"http://[::1]:8545/?key={KEY}", "http://[::1]:8545"),
        (f"wss://node.example/ws#{KEY}", "wss://node.example"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        (f"127.0.0.1:8545/{KEY}", "***"),
    ],
)
def test_an_rpc_url_is_shown_as_scheme_host_and_port_only(url: str, shown: str) -> None:
    assert redact_rpc_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://postgres:PGSECRET@db:5432/ledger", "postgresql+psycopg://postgres:***@db:5432/ledger"),
        (
            "postgresql+psycopg://postgres@db/ledger?password=PGSECRET&sslmode=require",
            "postgresql+psycopg://postgres@db/ledger?password=***&sslmode=require",
        ),
        (
            "postgresql+psycopg://u@db/x?options=-csearch_path%3Dt_1&sslpassword=PGSECRET&PassWord=PGSECRET",
            "postgresql+psycopg://u@db/x?options=-csearch_path%3Dt_1&sslpassword=***&PassWord=***",
        ),
        ("postgresql+psycopg://u:p%40ss%3Aw@db/x", "postgresql+psycopg://u:***@db/x"),
        ("postgresql+psycopg://u:p@ss@db/x", "postgresql+psycopg://u:***@db/x"),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/test", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        ("sqlite:////var/lib/reconciler/ledger.db", "sqlite:////var/lib/reconciler/ledger.db"),
        ("sqlite:///relative/ledger.db", "sqlite:///relative/ledger.db"),
        ("postgres:PGSECRET@db/x", "***"),
    ],
)
def test_a_database_url_keeps_everything_but_its_passwords(url: str, shown: str) -> None:
    assert redact_db_url(url) == shown


def test_redact_url_picks_the_rule_by_scheme() -> None:
    assert redact_url(RPC) == "https://mainnet.example.io"
    assert redact_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_scrub_removes_a_url_quoted_by_requests_and_keeps_the_rest_readable() -> None:
    url = f"http://127.0.0.1:5555/v3/{KEY}?apikey={KEY}"
    message = (
        "HTTPConnectionPool(host='127.0.0.1', port=5555): Max retries exceeded with url: "
        f"/v3/{KEY}?apikey={KEY} (Caused by NewConnectionError(...: [Errno 111] Connection refused)) "
        f"while posting to {url}; the provider said: unknown key {KEY}"
    )
    clean = scrub(message, [url])
    assert KEY not in clean
    assert "with url: /*** (Caused by" in clean
    assert "while posting to http://127.0.0.1:5555;" in clean
    assert "Connection refused" in clean


def test_scrub_catches_percent_encoded_and_decoded_spellings() -> None:
    url = "https://node.example/v2/k%2Fey+with+spaces0123?token=a%20b%20c%20d%20e"
    for spelling in ("v2/k/ey+with+spaces0123", "token=a b c d e", "v2/k%2Fey+with+spaces0123"):
        assert spelling not in scrub(f"saw {spelling} here", [url])


def test_scrub_of_a_database_url_hides_only_its_passwords() -> None:
    url = "postgresql+psycopg://ops:PGSECRET@db.internal:5432/ledger?sslpassword=SSLSECRET"
    clean = scrub(f'connection to "{url}" failed for ops (password PGSECRET, key SSLSECRET) on ledger', [url])
    assert "PGSECRET" not in clean and "SSLSECRET" not in clean
    assert "postgresql+psycopg://ops:***@db.internal:5432/ledger?sslpassword=***" in clean
    assert "failed for ops" in clean and "on ledger" in clean, "user and database name are not secrets"


def test_scrub_leaves_short_ordinary_words_of_a_path_alone_outside_the_url() -> None:
    url = f"https://node.example/v3/{KEY}"
    assert scrub("v3 of the JSON-RPC api", [url]) == "v3 of the JSON-RPC api"


def test_scrub_without_secrets_changes_nothing() -> None:
    assert scrub("nothing to hide at http://127.0.0.1:8545", []) == "nothing to hide at http://127.0.0.1:8545"
    assert scrub("plain", ["http://127.0.0.1:8545", ""]) == "plain"


def test_secret_parts_of_a_url_without_secrets_are_none() -> None:
    assert secret_parts("http://127.0.0.1:8545") == []
    assert secret_parts("http://127.0.0.1:8545/") == []
    assert secret_parts("postgresql+psycopg://postgres@127.0.0.1:5432/test") == []


_URL_SAFE = string.ascii_letters + string.digits + "-._~"


@given(
    key=st.text(alphabet=_URL_SAFE, min_size=8, max_size=40),
    host=st.sampled_from(["127.0.0.1:8545", "node.example", "[::1]:1"]),
    shape=st.sampled_from(["/{k}", "/v3/{k}", "/?apikey={k}", "/v3/{k}?apikey={k}", "/{k}#{k}"]),
)
def test_no_spelling_of_a_key_in_an_rpc_url_survives_scrub(key: str, host: str, shape: str) -> None:
    url = f"https://{host}" + shape.format(k=key)
    suffix = url[len(f"https://{host}") :]
    message = f"failed: {url} | with url: {suffix} | body echoed {key} | {url.upper()}"
    clean = scrub(message, [url])
    assert key not in clean
    assert f"https://{host}" in clean


def test_redact_urls_hides_paths_queries_and_passwords_in_free_text() -> None:
    line = (
        f'http://127.0.0.1:5555 "POST /v3/{KEY}?apikey={KEY} HTTP/1.1" 200 None; '
        f"Max retries exceeded with url: /v3/{KEY} (Caused by x); "
        f"see {RPC}, and postgresql://u:PGSECRET@db/x?password=PGSECRET; "
        "conninfo host=db password=PGSECRET sslpassword='PG SECRET'"
    )
    clean = redact_urls(line)
    assert KEY not in clean and "PGSECRET" not in clean and "PG SECRET" not in clean
    assert '"POST /*** HTTP/1.1" 200' in clean
    assert "see https://mainnet.example.io, and postgresql://u:***@db/x?password=***;" in clean
    assert redact_urls('"GET / HTTP/1.1" 200') == '"GET / HTTP/1.1" 200'


def test_the_log_filter_redacts_the_formatted_message_and_the_traceback() -> None:
    record = logging.LogRecord(
        "urllib3.connectionpool",
        logging.DEBUG,
        __file__,
        1,
        '%s://%s:%s "%s %s %s" %s %s',
        ("http", "127.0.0.1", 5555, "POST", f"/v3/{KEY}", "HTTP/1.1", 200, None),
        None,
    )
    try:
        raise ConnectionError(f"Max retries exceeded with url: /v3/{KEY}")
    except ConnectionError:
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record) is True
    formatted = logging.Formatter("%(message)s").format(record)
    assert KEY not in formatted
    assert 'http://127.0.0.1:5555 "POST /*** HTTP/1.1" 200 None' in formatted
    assert "ConnectionError" in formatted, "the traceback is kept, redacted"
