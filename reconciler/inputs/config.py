"""TOML configuration -> validated, immutable settings (reconciler.inputs.settings).

Invariant: a Settings object only exists for a file in which every key is known, every
address is EIP-55 checksummed, every amount is exact, and every reference (asset -> chain,
wallet -> chain) resolves. Errors name the key and say the fix.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from reconciler.domain import (
    MAX_NAME_LENGTH,
    UINT256_DIGITS,
    UINT256_MAX,
    AddressError,
    AmountError,
    AssetKind,
    SegClass,
    Severity,
    checksum_address,
    parse_amount,
)
from reconciler.errors import ConfigError
from reconciler.inputs.settings import (
    CANONICAL_MULTICALL3,
    DEFAULT_ALERT_MAX_PENDING_AGE,
    DEFAULT_INFLOW_GRACE,
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MAX_FEE,
    DEFAULT_PRICE_MAX_AGE,
    DEFAULT_UNIT_TIMEOUT,
    DEFAULT_WATCH_MAX_LAG,
    DEFAULT_WATCH_POLL,
    ISSUER_STANDARDS,
    AssetSettings,
    AuditSettings,
    ChainSettings,
    PresignSettings,
    ScheduleSettings,
    SegregationSettings,
    Settings,
    SurveillanceSettings,
    WalletSettings,
    WatchSettings,
    WebhookSettings,
)
from reconciler.redaction import redact_db_url, redact_rpc_url

DEFAULT_DATABASE_URL = "sqlite:///reconciler.db"
DATABASE_URL_ENV = "RECONCILER_DATABASE_URL"
SUPPORTED_DATABASE_URLS = "sqlite:///PATH (a file) or postgresql+psycopg://USER@HOST/DB"
READ_PATHS = ("multicall", "batch")
MAX_RPC_TIMEOUT = 3600.0
MAX_DURATION = timedelta(days=366)
_DECIMAL_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_DURATION_RE = re.compile(r"([0-9]{1,12})(ms|[smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CRON_FIELD_RE = re.compile(r"[0-9A-Za-z*/,\-]+")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# --------------------------------------------------------------------------- locating


def locate_config(explicit: str | None) -> Path:
    """--config beats RECONCILER_CONFIG, which beats ./reconciler.toml."""
    chosen = explicit or os.environ.get("RECONCILER_CONFIG") or None
    path = Path(chosen) if chosen else Path("reconciler.toml")
    if not path.is_file():
        if chosen:
            raise ConfigError(f"configuration file {str(path)!r} does not exist")
        raise ConfigError("no configuration: pass --config FILE, set RECONCILER_CONFIG, or create ./reconciler.toml")
    return path


def load_settings(explicit: str | None = None) -> Settings:
    path = locate_config(explicit)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh, parse_float=Decimal)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        # ValueError: bytes that are not UTF-8, or an integer past Python's 4300-digit limit.
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return parse_settings(raw, path)


def resolve_database_url(url: str, base: Path) -> str:
    """A relative SQLite path resolves against the config file's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        rest = url[len(prefix) :]
        if rest and not rest.startswith("/"):
            return prefix + str((base / rest).resolve())
    return url


def check_database_url(where: str, url: str) -> str:
    """Refuse a URL the ledger cannot live in. Messages show the URL with its passwords
    masked (redact_db_url), never as given."""
    shown = f"{where} = {_quoted(redact_db_url(url), 80)}"
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise ConfigError(f"{shown} has no scheme; write {SUPPORTED_DATABASE_URLS}")
    if scheme == "sqlite":
        path, _, query = rest.partition("?")
        if path in ("", "/", "/:memory:") or path.startswith("/file::memory:") or "mode=memory" in query:
            raise ConfigError(
                f"{shown} is an in-memory SQLite database, which is gone when the command exits "
                "and so cannot keep a ledger; give a file path, like sqlite:///reconciler.db"
            )
        if not path.startswith("/"):
            raise ConfigError(f"{shown}: a SQLite URL has three slashes before its path; write sqlite:///PATH")
        return url
    if scheme == "postgresql+psycopg":
        if not rest.strip("/"):
            raise ConfigError(f"{shown} names no server; write postgresql+psycopg://USER@HOST/DB")
        return url
    if scheme in ("postgresql", "postgres") or scheme.startswith(("postgresql+", "postgres+")):
        raise ConfigError(
            f"{shown}: the reconciler reaches PostgreSQL through psycopg 3; "
            "write postgresql+psycopg:// and keep the rest of the URL"
        )
    raise ConfigError(f"{shown} has an unsupported scheme; write {SUPPORTED_DATABASE_URLS}")


def parse_duration(text: str) -> timedelta:
    """ "500ms", "30s", "10m", "24h" or "1d" -> timedelta; ValueError naming the accepted forms."""
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f'{_quoted(text)} is not a duration like "30s", "10m", "24h" or "1d"')
    count, unit = int(match[1]), match[2]
    value = timedelta(milliseconds=count) if unit == "ms" else timedelta(seconds=count * _DURATION_UNITS[unit])
    if value > MAX_DURATION:
        raise ValueError(f"{_quoted(text)} is longer than {MAX_DURATION.days} days")
    return value


def schedule_interval(spec: str) -> timedelta | None:
    """The interval of a validated schedule entry, or None when it is a cron expression."""
    return parse_duration(spec) if _DURATION_RE.fullmatch(spec) else None


def _quoted(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


# --------------------------------------------------------------------------- parsing


_Parser = Callable[[str, Any], Any]


@dataclass(frozen=True, slots=True)
class _Key:
    parse: _Parser
    required: bool = False


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_table(path: str, raw: Any, spec: Mapping[str, _Key]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{path}] must be a table")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in spec:
            hint = difflib.get_close_matches(key, list(spec), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(spec)}"
            raise ConfigError(f"unknown key {_where(path, key)!r}{suggestion}")
        out[key] = spec[key].parse(_where(path, key), value)
    for key, k in spec.items():
        if k.required and key not in out:
            raise ConfigError(f"missing required key {_where(path, key)!r}")
    return out


def _string(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    return value


def _nonempty(where: str, value: Any) -> str:
    text = _string(where, value)
    if not text.strip():
        raise ConfigError(f"{where} must not be empty")
    return text


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false")
    return value


def _int(lo: int, hi: int | None = None) -> _Parser:
    def parse(where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number")
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ConfigError(f"{where} must be {bound}, not {value}")
        return value

    return parse


def _positive_number(where: str, value: Any) -> float:
    """Seconds, as a TOML number: finite, above 0 and at most an hour."""
    limit = f"a number of seconds above 0 and at most {MAX_RPC_TIMEOUT:g} (like 10 or 2.5)"
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ConfigError(f"{where} must be {limit}")
    # Decimal("nan") raises InvalidOperation on comparison: test finiteness first.
    if isinstance(value, Decimal) and not value.is_finite():
        raise ConfigError(f"{where} = {value} is not finite; it must be {limit}")
    if not 0 < value <= MAX_RPC_TIMEOUT:
        raise ConfigError(f"{where} = {value} is out of range; it must be {limit}")
    return float(value)


def _duration(minimum: timedelta) -> _Parser:
    def parse(where: str, value: Any) -> timedelta:
        if isinstance(value, int) and not isinstance(value, bool):
            key = where.rsplit(".", 1)[-1]
            raise ConfigError(f'{where} must be a quoted duration like "30s", "10m", "24h" (write {key} = "{value}s")')
        if not isinstance(value, str):
            raise ConfigError(f'{where} must be a quoted duration like "30s", "10m", "24h"')
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if parsed < minimum:
            raise ConfigError(f"{where} = {value!r} must be at least {int(minimum.total_seconds())}s")
        return parsed

    return parse


def _schedule(where: str, value: Any) -> str:
    """A cron expression of 5 fields or an interval; kept as written (`schedule_interval`)."""
    forms = 'a cron expression of 5 fields like "*/5 * * * *" or an interval like "30s", "10m", "1h"'
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a quoted string: {forms}")
    if _DURATION_RE.fullmatch(value):
        _duration(timedelta(seconds=1))(where, value)
        return value
    fields = value.split()
    if len(fields) == 5 and all(_CRON_FIELD_RE.fullmatch(f) for f in fields):
        return value
    if len(fields) != 5:
        raise ConfigError(f"{where} = {_quoted(value)} has {len(fields)} field(s); it must be {forms}")
    raise ConfigError(f"{where} = {_quoted(value)} has characters cron does not use; it must be {forms}")


def _timezone(where: str, value: Any) -> str:
    text = _nonempty(where, value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        hint = difflib.get_close_matches(text, sorted(available_timezones()), n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(
            f'{where} = {_quoted(text)} is not an IANA time zone like "America/Chicago" or "UTC"{extra} '
            "(if it is one, this system lacks time zone data: install the tzdata package)"
        ) from None
    return text


def _listen(where: str, value: Any) -> str:
    text = _nonempty(where, value)
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    ok = (
        bool(sep and host)
        and port.isascii()
        and port.isdigit()
        and len(port) <= 5
        and 1 <= int(port) <= 65535
        and (bracketed or ":" not in host)
    )
    if not ok:
        raise ConfigError(
            f'{where} = {_quoted(text)} is not HOST:PORT like "127.0.0.1:9464" '
            '(port 1 to 65535; an IPv6 host in brackets: "[::1]:9464")'
        )
    return text


def _env_name(where: str, value: Any) -> str:
    # Never echo the value: someone may have pasted the secret itself here.
    if not isinstance(value, str) or not _ENV_NAME_RE.fullmatch(value):
        raise ConfigError(
            f'{where} names the environment variable that holds the secret, like "RECONCILER_WEBHOOK_SECRET" '
            "(letters, digits and '_'); put the secret itself in that variable, not in the file"
        )
    return value


def _http_url(where: str, value: Any) -> str:
    # Shown as scheme://host only: RPC and webhook URLs often carry a key in the path.
    text = _nonempty(where, value)
    if not text.startswith(("http://", "https://")):
        raise ConfigError(f"{where} = {_quoted(redact_rpc_url(text))} must start with http:// or https://")
    return text


def _ws_url(where: str, value: Any) -> str:
    text = _nonempty(where, value)
    if not text.startswith(("ws://", "wss://")):
        raise ConfigError(f"{where} = {_quoted(redact_rpc_url(text))} must start with ws:// or wss://")
    return text


def _native_amount(where: str, value: Any) -> int:
    """An amount of the chain's native coin (18 decimals) as a quoted decimal, in base units."""
    money = _money(where, value)
    try:
        return parse_amount(str(money), 18)
    except AmountError as exc:
        raise ConfigError(f'{where} = "{money}": {exc} (the native coin has 18 decimals)') from exc


def _explorer_url(where: str, value: Any) -> str:
    """A block explorer's base URL ("https://etherscan.io"), kept without its trailing '/'."""
    from urllib.parse import urlsplit

    text = _http_url(where, value).rstrip("/")
    parts = urlsplit(text)
    if not parts.hostname or parts.query or parts.fragment or any(c.isspace() or c in "\"'<>" for c in text):
        raise ConfigError(
            f"{where} = {_quoted(text)} is not a block explorer's base URL like \"https://etherscan.io\" "
            "(a scheme and host, an optional path, no query or fragment)"
        )
    return text


def _function_name(where: str, value: Any) -> str:
    text = _nonempty(where, value)
    if not _IDENTIFIER_RE.fullmatch(text):
        fix = f" (write only the name: {text.split('(', 1)[0].strip()!r})" if "(" in text else ""
        raise ConfigError(
            f"{where} = {_quoted(text)} is not a Solidity function name; it names the token's "
            f'`(address) returns (bool)` view, like "isBlacklisted"{fix}'
        )
    return text


def _choice(options: tuple[str, ...]) -> _Parser:
    def parse(where: str, value: Any) -> str:
        text = _string(where, value)
        if text not in options:
            hint = difflib.get_close_matches(text, options, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{where} = {text!r} is not one of {', '.join(options)}{extra}")
        return text

    return parse


def _money(where: str, value: Any) -> Decimal:
    """Money, prices and haircuts are quoted strings; an unquoted TOML float is refused."""
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        raise ConfigError(
            f'{where} must be a quoted string (write {where.rsplit(".", 1)[-1]} = "{value}"): '
            "unquoted numbers are binary floats in TOML and are not exact"
        )
    text = _string(where, value)
    if not _DECIMAL_RE.fullmatch(text):
        raise ConfigError(f'{where} = {text!r} is not a plain non-negative decimal like "0.02"')
    return Decimal(text)


def _fraction(where: str, value: Any) -> Decimal:
    frac = _money(where, value)
    if frac >= 1:
        raise ConfigError(f'{where} = "{frac}" must be a fraction below 1 ("0.02" is 2%)')
    return frac


def _fractions(where: str, value: Any) -> tuple[Decimal, ...]:
    if not isinstance(value, list):
        raise ConfigError(f'{where} must be a list of quoted fractions like ["0.02"]')
    return tuple(_fraction(f"{where}[{i}]", v) for i, v in enumerate(value))


def _base_units(where: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT256_MAX:
        return value
    # Length first: int() of more than 4300 digits raises, and no uint256 has more than 78.
    if isinstance(value, str) and value.isdigit() and value.isascii() and len(value.lstrip("0")) <= UINT256_DIGITS:
        units = int(value)
        if units <= UINT256_MAX:
            return units
    raise ConfigError(f'{where} must be a whole non-negative number of base units up to 2^256 - 1, like "0"')


def _address(where: str, value: Any) -> str:
    text = _string(where, value)
    try:
        return checksum_address(text)
    except AddressError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _addresses(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of addresses")
    out = tuple(_address(f"{where}[{i}]", v) for i, v in enumerate(value))
    if len(set(out)) != len(out):
        raise ConfigError(f"{where} lists an address twice")
    return out


def _urls(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f'{where} must be a non-empty list of URLs like ["http://127.0.0.1:8545"]')
    return tuple(_http_url(f"{where}[{i}]", v) for i, v in enumerate(value))


def _webhooks(where: str, value: Any) -> tuple[WebhookSettings, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be an array of tables ([[alerts.webhooks]])")
    hooks = []
    for i, item in enumerate(value):
        got = _check_table(f"{where}[{i}]", item, _WEBHOOK_KEYS)
        hooks.append(
            WebhookSettings(
                url=got["url"],
                secret_env=got.get("secret_env"),
                min_severity=Severity(got.get("min_severity", "error")),
            )
        )
    return tuple(hooks)


def _section(spec: Mapping[str, _Key]) -> _Parser:
    def parse(where: str, value: Any) -> dict[str, Any]:
        return _check_table(where, value, spec)

    return parse


_CHAIN_KEYS = {
    "kind": _Key(_choice(("evm",)), required=True),
    "rpc_urls": _Key(_urls, required=True),
    "chain_id": _Key(_int(1), required=True),
    "confirmations": _Key(_int(0, 10_000)),
    "multicall3": _Key(_address),
    "read_path": _Key(_choice(READ_PATHS)),
    "rpc_retries": _Key(_int(0, 10)),
    "cross_check": _Key(_bool),
    "start_block": _Key(_int(0, 2**63 - 1)),
    # Extensions beyond the design: tuning for slow or strict providers.
    "rpc_timeout": _Key(_positive_number),
    "chunk_size": _Key(_int(1, 5000)),
    "log_chunk_blocks": _Key(_int(1)),
    "explorer_url": _Key(_explorer_url),
    "ws_url": _Key(_ws_url),
    "max_fee": _Key(_native_amount),
}
_ASSET_KEYS = {
    "chain": _Key(_nonempty, required=True),
    "address": _Key(_address),
    "native": _Key(_bool),
    "decimals": _Key(_int(0, 77)),
    "kind": _Key(_choice(tuple(k.value for k in AssetKind)), required=True),
    "price_usd": _Key(_money),
    "price_feed": _Key(_address),
    "price_max_age": _Key(_duration(timedelta(seconds=1))),
    "haircut": _Key(_fraction),
    "dco_haircuts": _Key(_fractions),
    "tolerance": _Key(_base_units),
    "issuer": _Key(_string),
    "fund_family": _Key(_string),
    "government_fund": _Key(_bool),
    "freeze_check": _Key(_function_name),
    "pause_check": _Key(_bool),
    "issuer_standard": _Key(_choice(ISSUER_STANDARDS)),
}
_WALLET_KEYS = {
    "chain": _Key(_nonempty, required=True),
    "address": _Key(_address, required=True),
    "class": _Key(_choice(tuple(c.value for c in SegClass)), required=True),
    "custodian": _Key(_string),
    "approvers": _Key(_addresses),
    "threshold": _Key(_int(0)),
    "allowed_spenders": _Key(_addresses),
}
_WEBHOOK_KEYS = {
    "url": _Key(_http_url, required=True),
    "secret_env": _Key(_env_name),
    "min_severity": _Key(_choice(tuple(s.value for s in Severity))),
}
_TARGET_KEYS = {c.value: _Key(_money) for c in SegClass if c is not SegClass.HOUSE}
_TOP_KEYS: dict[str, _Key] = {
    "database": _Key(
        _section(
            {
                "url": _Key(lambda w, v: check_database_url(w, _nonempty(w, v))),
                # Extension beyond the design: how long a run waits for the ledger lock.
                "lock_timeout": _Key(_duration(timedelta(0))),
            }
        )
    ),
    "chains": _Key(lambda w, v: v),
    "assets": _Key(lambda w, v: v),
    "wallets": _Key(lambda w, v: v),
    "segregation": _Key(
        _section(
            {
                "haircut_floor": _Key(_fraction),
                "timezone": _Key(_timezone),
                "targets": _Key(_section(_TARGET_KEYS)),
            }
        )
    ),
    "surveillance": _Key(
        _section({"inflow_grace": _Key(_duration(timedelta(0))), "max_fee": _Key(_native_amount)})
    ),
    "presign": _Key(_section({"delegatecall_allowlist": _Key(_addresses)})),
    "watch": _Key(
        _section(
            {
                "enabled": _Key(_bool),
                "poll_interval": _Key(_duration(timedelta(milliseconds=100))),
                "max_lag": _Key(_duration(timedelta(seconds=1))),
            }
        )
    ),
    "audit": _Key(_section({"key_env": _Key(_env_name)})),
    "schedule": _Key(
        _section(
            {
                "timezone": _Key(_timezone),
                "run": _Key(_schedule),
                "scan": _Key(_schedule),
                "segregation_statement": _Key(_schedule),
                "shards": _Key(_int(1, 1024)),
                "unit_timeout": _Key(_duration(timedelta(seconds=1))),
            }
        )
    ),
    "alerts": _Key(
        _section(
            {
                "webhooks": _Key(_webhooks),
                # Extension beyond the design: how long an alert may wait before `health` fails.
                "max_pending_age": _Key(_duration(timedelta(seconds=1))),
            }
        )
    ),
    "metrics": _Key(_section({"listen": _Key(_listen)})),
}


def _named_tables(kind: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{kind}] must hold tables like [{kind}.NAME]")
    for name, value in raw.items():
        if not _NAME_RE.fullmatch(name):
            raise ConfigError(f"[{kind}.{name}]: names use letters, digits, '_', '-' and '.' only")
        if len(name) > MAX_NAME_LENGTH:
            raise ConfigError(
                f"[{kind}.{name[:40]}…]: a name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{kind}.{name} must be a table ([{kind}.{name}])")
    return raw


def parse_settings(raw: Mapping[str, Any], path: Path) -> Settings:
    top = _check_table("", dict(raw), _TOP_KEYS)
    chains_raw = _named_tables("chains", top.get("chains", {}))
    assets_raw = _named_tables("assets", top.get("assets", {}))
    wallets_raw = _named_tables("wallets", top.get("wallets", {}))
    if not chains_raw:
        raise ConfigError("no chains configured: add a [chains.NAME] table")

    chains: dict[str, ChainSettings] = {}
    seen_ids: dict[int, str] = {}
    for name, table in chains_raw.items():
        got = _check_table(f"chains.{name}", table, _CHAIN_KEYS)
        chains[name] = ChainSettings(
            name=name,
            kind=got["kind"],
            rpc_urls=got["rpc_urls"],
            chain_id=got["chain_id"],
            confirmations=got.get("confirmations", 0),
            multicall3=got.get("multicall3", CANONICAL_MULTICALL3),
            read_path=got.get("read_path"),
            rpc_retries=got.get("rpc_retries", 2),
            cross_check=got.get("cross_check", False),
            start_block=got.get("start_block"),
            rpc_timeout=got.get("rpc_timeout", 10.0),
            chunk_size=got.get("chunk_size", 500),
            log_chunk_blocks=got.get("log_chunk_blocks", 2000),
            explorer_url=got.get("explorer_url"),
            ws_url=got.get("ws_url"),
            max_fee=got.get("max_fee"),
        )
        if chains[name].cross_check and len(chains[name].rpc_urls) < 2:
            raise ConfigError(
                f"chains.{name}.cross_check needs at least two rpc_urls to compare; add an endpoint to "
                f"chains.{name}.rpc_urls or set cross_check = false"
            )
        if got["chain_id"] in seen_ids:
            raise ConfigError(
                f"chains.{name}.chain_id = {got['chain_id']} is already used by chains.{seen_ids[got['chain_id']]}"
            )
        seen_ids[got["chain_id"]] = name

    def chain_ref(where: str, value: str) -> str:
        if value not in chains:
            hint = difflib.get_close_matches(value, list(chains), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else f"; configured: {', '.join(chains)}"
            raise ConfigError(f"{where} = {value!r} names no [chains.{value}]{extra}")
        return value

    assets: dict[str, AssetSettings] = {}
    token_seen: dict[tuple[str, str], str] = {}
    for name, table in assets_raw.items():
        where = f"assets.{name}"
        got = _check_table(where, table, _ASSET_KEYS)
        chain = chain_ref(f"{where}.chain", got["chain"])
        native = got.get("native", False)
        kind = AssetKind(got["kind"])
        for mmf_key in ("fund_family", "government_fund"):
            if mmf_key in got and kind is not AssetKind.MMF:
                raise ConfigError(f'{where}.{mmf_key} applies to money-market fund shares only (kind = "mmf")')
        if native:
            if "address" in got:
                raise ConfigError(f"{where}: a native asset has no address; remove {where}.address")
            for token_key in ("freeze_check", "pause_check", "issuer_standard"):
                if token_key in got:
                    raise ConfigError(f"{where}.{token_key}: a native coin has no token contract to read; remove it")
            decimals = got.get("decimals", 18)
            if decimals != 18:
                raise ConfigError(f"{where}.decimals: a native coin has 18 decimals, not {decimals}")
        else:
            if "address" not in got:
                raise ConfigError(f"missing required key '{where}.address' (or set native = true for the chain's coin)")
            if "decimals" not in got:
                raise ConfigError(f"missing required key '{where}.decimals'")
            decimals = got["decimals"]
            token = (chain, got["address"])
            if token in token_seen:
                raise ConfigError(f"{where}.address is the same token as assets.{token_seen[token]} on chain {chain}")
            token_seen[token] = name
        assets[name] = AssetSettings(
            name=name,
            chain=chain,
            decimals=decimals,
            kind=kind,
            address=got.get("address"),
            native=native,
            price_usd=got.get("price_usd"),
            price_feed=got.get("price_feed"),
            price_max_age=got.get("price_max_age", DEFAULT_PRICE_MAX_AGE),
            haircut=got.get("haircut"),
            dco_haircuts=got.get("dco_haircuts", ()),
            tolerance=got.get("tolerance", 0),
            issuer=got.get("issuer", ""),
            fund_family=got.get("fund_family", ""),
            government_fund=got.get("government_fund", False),
            freeze_check=got.get("freeze_check"),
            pause_check=got.get("pause_check", False),
            issuer_standard=got.get("issuer_standard", "none"),
        )
    natives = [a for a in assets.values() if a.native]
    for chain in chains:
        count = sum(1 for a in natives if a.chain == chain)
        if count > 1:
            raise ConfigError(f"chain {chain!r} has {count} native assets; keep one")

    wallets: dict[str, WalletSettings] = {}
    wallet_seen: dict[tuple[str, str], str] = {}
    for name, table in wallets_raw.items():
        where = f"wallets.{name}"
        got = _check_table(where, table, _WALLET_KEYS)
        chain = chain_ref(f"{where}.chain", got["chain"])
        approvers = got.get("approvers", ())
        threshold = got.get("threshold", 0)
        if threshold > len(approvers):
            raise ConfigError(f"{where}.threshold = {threshold} exceeds the {len(approvers)} approver(s) listed")
        key = (chain, got["address"])
        if key in wallet_seen:
            raise ConfigError(f"{where}.address is already configured as wallets.{wallet_seen[key]} on chain {chain}")
        wallet_seen[key] = name
        wallets[name] = WalletSettings(
            name=name,
            chain=chain,
            address=got["address"],
            seg_class=SegClass(got["class"]),
            custodian=got.get("custodian", ""),
            approvers=approvers,
            threshold=threshold,
            allowed_spenders=got.get("allowed_spenders", ()),
        )

    seg = top.get("segregation", {})
    schedule = top.get("schedule", {})
    watch = top.get("watch", {})
    database = top.get("database", {})
    env_url = os.environ.get(DATABASE_URL_ENV)
    # [database] url was checked as it was parsed, even when the variable overrides it.
    url = check_database_url(DATABASE_URL_ENV, env_url) if env_url else database.get("url", DEFAULT_DATABASE_URL)
    return Settings(
        path=path,
        database_url=resolve_database_url(url, path.resolve().parent),
        chains=chains,
        assets=assets,
        wallets=wallets,
        segregation=SegregationSettings(
            haircut_floor=seg.get("haircut_floor", Decimal("0.20")),
            # Business dates and closes of business: the firm's zone, as [schedule] has it when
            # [segregation] does not say.
            timezone=seg.get("timezone", schedule.get("timezone", "UTC")),
            targets={SegClass(k): v for k, v in seg.get("targets", {}).items()},
        ),
        surveillance=SurveillanceSettings(
            inflow_grace=top.get("surveillance", {}).get("inflow_grace", DEFAULT_INFLOW_GRACE),
            max_fee=top.get("surveillance", {}).get("max_fee", DEFAULT_MAX_FEE),
        ),
        schedule=ScheduleSettings(
            timezone=schedule.get("timezone", "UTC"),
            run=schedule.get("run"),
            scan=schedule.get("scan"),
            segregation_statement=schedule.get("segregation_statement"),
            shards=schedule.get("shards", 1),
            unit_timeout=schedule.get("unit_timeout", DEFAULT_UNIT_TIMEOUT),
        ),
        webhooks=top.get("alerts", {}).get("webhooks", ()),
        alert_max_pending_age=top.get("alerts", {}).get("max_pending_age", DEFAULT_ALERT_MAX_PENDING_AGE),
        metrics_listen=top.get("metrics", {}).get("listen"),
        lock_timeout=database.get("lock_timeout", DEFAULT_LOCK_TIMEOUT).total_seconds(),
        presign=PresignSettings(delegatecall_allowlist=top.get("presign", {}).get("delegatecall_allowlist", ())),
        watch=WatchSettings(
            enabled=watch.get("enabled", False),
            poll_interval=watch.get("poll_interval", DEFAULT_WATCH_POLL),
            max_lag=watch.get("max_lag", DEFAULT_WATCH_MAX_LAG),
        ),
        audit=AuditSettings(key_env=top.get("audit", {}).get("key_env")),
    )
