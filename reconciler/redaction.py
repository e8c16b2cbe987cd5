"""Credentials inside URLs never leave the process.

Invariants: an RPC URL is shown as scheme://host[:port] only (a hosted provider's API key sits
in the path, the query or the userinfo); a database URL is shown with every password replaced
by ``***`` (in the userinfo and in password-like query parameters) and the rest kept; and any
text built from a library's message (requests and psycopg quote the URL they were given) is
scrubbed of each configured URL and of each of its secret parts, in the spellings a library
prints them (as given, percent-decoded, percent-encoded). Scrub before truncating: a cut can
leave half a key that no longer matches.

And text that came from outside (a node's error message, a note, a name in a CSV file) never
drives a terminal: `neutralise` shows each control character as a visible escape (ESC as
``\\x1b``, a newline as ``\\n``), so a hostile node cannot clear the screen or paint a fake
"all positions agree" over the real output. Pure: standard library only, no I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, unquote_plus

MASK = "***"


def _escape_table() -> dict[int, str]:
    """Every character that moves the cursor, changes colours or reorders text on a terminal,
    mapped to its visible escape: C0 (``\\n``, ``\\r``, ``\\t`` by name), DEL, C1 (``\\x9b``, a
    one-character CSI), the bidirectional overrides and isolates (``\\u202e`` would show the rest
    of a line reversed) and the line and paragraph separators."""
    table = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    table |= {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
    for code in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029):
        table[code] = f"\\u{code:04x}"
    return table


_ESCAPES = _escape_table()
_ESCAPES_KEEPING_NEWLINES = {k: v for k, v in _ESCAPES.items() if k != ord("\n")}


def neutralise(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every control character shown as a visible escape (ESC as ``\\x1b``, a
    newline as ``\\n``); with ``keep_newlines``, newlines stay (a message of several lines that
    the program composed). Everything else, brackets and backslashes included, is kept as it is."""
    return text.translate(_ESCAPES_KEEPING_NEWLINES if keep_newlines else _ESCAPES)

_WEB_SCHEMES = frozenset({"http", "https", "ws", "wss"})
# A lone path segment or query value this long is likely a key, and is scrubbed wherever it
# appears even outside the URL (an error body that echoes it); shorter ones ("v3", "rpc")
# would mangle ordinary words, and are scrubbed only as part of the whole path or query.
_LONE_TOKEN = 8
# What requests re-quotes in a URL (requests.utils.requote_uri): everything else is escaped.
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>`]*[^\s'\"<>`),.;:\]]")
# urllib3 logs `"POST /v3/<key> HTTP/1.1" 200`; requests errors say "with url: /v3/<key>".
_BARE_PATH = re.compile(r"(\b(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) |with url: )(/[^\s\"']+)")
# libpq connection strings are `key=value` pairs, not URLs: `password=…`, `sslpassword=…`.
_KEY_VALUE_PASSWORD = re.compile(r"\b(\w*pass(?:word|wd)?\s*=\s*)('[^']*'|[^\s&'\"]+)", re.IGNORECASE)


def _is_password_param(name: str) -> bool:
    key = unquote_plus(name).strip().lower()
    return key in ("pass", "pwd") or any(
        word in key for word in ("password", "passwd", "secret", "token", "apikey", "api_key")
    )


def _parse(url: str) -> tuple[str, str, str, str] | None:
    """(scheme, userinfo, host[:port], rest) of ``scheme://[userinfo@]host[:port][rest]``."""
    scheme, sep, after = url.partition("://")
    if not sep or not scheme:
        return None
    end = len(after)
    for stop in "/?#":
        found = after.find(stop)
        if found != -1:
            end = min(end, found)
    authority, rest = after[:end], after[end:]
    userinfo, at, hostport = authority.rpartition("@")
    return scheme, userinfo if at else "", hostport, rest


def _is_web(url: str) -> bool:
    return url.partition("://")[0].lower() in _WEB_SCHEMES


def redact_rpc_url(url: str) -> str:
    """scheme://host[:port]: the path, query, fragment and userinfo are dropped."""
    parsed = _parse(url)
    if parsed is None:
        return MASK
    scheme, _userinfo, hostport, _rest = parsed
    return f"{scheme}://{hostport}"


def redact_db_url(url: str) -> str:
    """The URL with each password (userinfo, password-like query parameters) as ``***``."""
    parsed = _parse(url)
    if parsed is None:
        # Not scheme://…: show it only when nothing in it could be a credential.
        return url if "@" not in url and "=" not in url else MASK
    scheme, userinfo, hostport, rest = parsed
    user, colon, _password = userinfo.partition(":")
    auth = f"{user}:{MASK}@" if colon else (f"{user}@" if userinfo else "")
    path, qmark, query = rest.partition("?")
    if qmark:
        query, hashmark, fragment = query.partition("#")
        params = [_masked_param(p) for p in query.split("&")]
        rest = f"{path}?{'&'.join(params)}{hashmark}{fragment}"
    return f"{scheme}://{auth}{hostport}{rest}"


def _masked_param(param: str) -> str:
    name, eq, _value = param.partition("=")
    return f"{name}={MASK}" if eq and _is_password_param(name) else param


def redact_url(url: str) -> str:
    """An RPC (http, https, ws, wss) URL as redact_rpc_url shows it, any other as redact_db_url."""
    return redact_rpc_url(url) if _is_web(url) else redact_db_url(url)


def secret_parts(url: str) -> list[str]:
    """The pieces of ``url`` that must not be shown, longest first.

    For an RPC URL: the userinfo and its password, everything after the host, the path beyond
    '/', the query, the fragment, and each path segment or query value of 8 characters or
    more. For a database URL: the password of the userinfo and each password-like query
    parameter (``password=``, ``sslpassword=``…) with its value.
    """
    parsed = _parse(url)
    if parsed is None:
        return []
    _scheme, userinfo, _hostport, rest = parsed
    parts: set[str] = set()
    password = userinfo.partition(":")[2]
    parts.add(password)
    path, _, query = rest.partition("?")
    if "#" in path:
        path, _, fragment = path.partition("#")
    else:
        query, _, fragment = query.partition("#")
    if _is_web(url):
        parts.add(userinfo)
        if rest not in ("", "/"):
            parts.add(rest)
        parts.update((path.lstrip("/"), query, fragment))
        parts.update(s for s in path.split("/") if len(s) >= _LONE_TOKEN)
        values = [p.partition("=")[2] for p in query.split("&")]
        parts.update(v for v in values if len(v) >= _LONE_TOKEN)
    else:
        for param in query.split("&"):
            name, eq, value = param.partition("=")
            if eq and _is_password_param(name):
                parts.update((param, value))
    spellings = {form for part in parts if part for form in (part, unquote(part), quote(unquote(part), safe=_URI_SAFE))}
    return sorted((s for s in spellings if s), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each URL in ``secrets`` shown redacted, and each of their secret parts
    (wherever it appears, inside the URL or not) replaced by ``***``."""
    urls = [u for u in secrets if u]
    for url in sorted(urls, key=len, reverse=True):
        text = text.replace(url, redact_url(url))
    tokens = sorted({t for url in urls for t in secret_parts(url)}, key=len, reverse=True)
    for token in tokens:
        text = text.replace(token, "/" + MASK if token.startswith("/") else MASK)
    return text


def redact_urls(text: str) -> str:
    """Every URL found in free text redacted (RPC URLs to scheme://host[:port], others of their
    passwords), the request paths that urllib3 and requests print after a host, and the values
    of `password=`-like pairs of a connection string."""

    def path(match: re.Match[str]) -> str:
        return match.group(1) + ("/" if match.group(2) == "/" else "/" + MASK)

    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _BARE_PATH.sub(path, text)
    # A value that is already masked (a URL's query, above) keeps what follows it.
    return _KEY_VALUE_PASSWORD.sub(lambda m: m.group(0) if m.group(2).startswith(MASK) else m.group(1) + MASK, text)


class RedactingFilter(logging.Filter):
    """A handler filter: the message (and any traceback text) of each record, with URLs redacted.

    Installed on the root logger's handlers, it also covers libraries that log URLs (urllib3
    logs each request's path at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_urls(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_urls(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_urls(record.stack_info)
        return True
