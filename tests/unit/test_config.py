"""TOML configuration -> Settings: documented defaults, precedence, and errors that name the key."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain import AssetKind, SegClass, Severity
from reconciler.errors import ConfigError
from reconciler.inputs.config import load_settings, parse_duration, schedule_interval
from reconciler.inputs.settings import CANONICAL_MULTICALL3, Settings

USDC = "0x1773e1dDF200EFB0fafC1E372028AA623f95d2DE"
W1 = "0xeA3E1C24BBC66C2a2f4DE96e35920F0e1984cFa7"
W2 = "0x27ECfCF2fb4796549b8C8cfd2840B1dE5CF7f859"
A1 = "0x37D3424576bAFb5fD5f9f8E99478F66780477Fcd"
A2 = "0xa2060Faa0FC5697Bc282c626D908A989dC0D2B79"
SPENDER = "0x49b2c05ea4541c2d950c8dd66A6ebBC5886c7039"
FEED = "0x4258863E2D81c316e4a4dD381c3c50F57F933Be2"
MMF = "0x6ff0F9F9A2EAa629C52d174EB99509D1e0E25d84"

CHAIN = """
[chains.eth]
kind = "evm"
rpc_urls = ["http://127.0.0.1:8545"]
chain_id = 31337
"""

USDC_ASSET = f"""
[assets.USDC]
chain = "eth"
address = "{USDC}"
decimals = 6
kind = "stablecoin"
"""

ETH_ASSET = """
[assets.ETH]
chain = "eth"
native = true
kind = "native"
"""

WALLET = f"""
[wallets.w1]
chain = "eth"
address = "{W1}"
class = "futures"
"""

MINIMAL = CHAIN + USDC_ASSET + ETH_ASSET + WALLET


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No RECONCILER_* variable from the outside, and a cwd without a reconciler.toml."""
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    monkeypatch.delenv("RECONCILER_DATABASE_URL", raising=False)
    empty = tmp_path / "cwd"
    empty.mkdir()
    monkeypatch.chdir(empty)


def _write(tmp_path: Path, text: str, name: str = "reconciler.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _load(tmp_path: Path, text: str) -> Settings:
    return load_settings(str(_write(tmp_path, text)))


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as exc_info:
        _load(tmp_path, text)
    return str(exc_info.value)


# ----------------------------------------------------------------------------- valid files


def test_minimal_config_loads_with_documented_defaults(tmp_path: Path) -> None:
    s = _load(tmp_path, MINIMAL)

    assert list(s.chains) == ["eth"]
    chain = s.chains["eth"]
    assert chain.kind == "evm"
    assert chain.rpc_urls == ("http://127.0.0.1:8545",)
    assert chain.chain_id == 31337
    assert chain.confirmations == 0
    assert chain.multicall3 == CANONICAL_MULTICALL3 == "0xcA11bde05977b3631167028862bE2a173976CA11"
    assert chain.read_path is None
    assert chain.rpc_retries == 2
    assert chain.cross_check is False
    assert chain.start_block is None

    usdc = s.assets["USDC"]
    assert (usdc.chain, usdc.address, usdc.decimals, usdc.kind, usdc.native) == (
        "eth",
        USDC,
        6,
        AssetKind.STABLECOIN,
        False,
    )
    assert usdc.tolerance == 0
    assert usdc.price_usd is None and usdc.price_feed is None and usdc.haircut is None
    assert usdc.dco_haircuts == ()
    assert usdc.price_max_age == timedelta(hours=24)
    assert usdc.freeze_check is None
    assert usdc.pause_check is False

    eth = s.assets["ETH"]
    assert eth.native is True
    assert eth.address is None
    assert eth.decimals == 18
    assert eth.kind is AssetKind.NATIVE
    assert eth.tolerance == 0

    w1 = s.wallets["w1"]
    assert (w1.chain, w1.address, w1.seg_class) == ("eth", W1, SegClass.FUTURES)
    assert w1.approvers == ()
    assert w1.threshold == 0
    assert w1.allowed_spenders == ()
    assert w1.custodian == ""

    assert s.webhooks == ()
    assert s.metrics_listen is None
    assert s.surveillance.inflow_grace == timedelta(hours=24)
    assert s.lock_timeout == 300.0
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'reconciler.db'}"
    assert [a.name for a in s.assets_on("eth")] == ["USDC", "ETH"]
    assert [w.name for w in s.wallets_on("eth")] == ["w1"]
    assert s.wallet_by_address("eth", W1) is w1


def test_every_key_named_in_the_design_is_accepted(tmp_path: Path) -> None:
    text = f"""
[database]
url = "sqlite:///ledger.db"

[chains.eth]
kind = "evm"
rpc_urls = ["http://127.0.0.1:8545", "https://backup.example/rpc"]
chain_id = 31337
confirmations = 12
multicall3 = "{CANONICAL_MULTICALL3}"
read_path = "batch"
rpc_retries = 3
cross_check = true
start_block = 1000
ws_url = "ws://127.0.0.1:8545"
max_fee = "0.1"

[assets.USDC]
chain = "eth"
address = "{USDC}"
decimals = 6
kind = "stablecoin"
price_usd = "1.00"
haircut = "0.25"
dco_haircuts = ["0.02", "0.05"]
tolerance = "10"
issuer = "Example Issuer"
freeze_check = "isBlacklisted"
pause_check = true

[assets.MMF]
chain = "eth"
address = "{MMF}"
decimals = 18
kind = "mmf"
price_feed = "{FEED}"
price_max_age = "10m"
issuer = "Example Issuer"
fund_family = "Example Funds"
government_fund = true
issuer_standard = "erc3643"

[assets.ETH]
chain = "eth"
native = true
decimals = 18
kind = "native"

[wallets.cust-seg-1]
chain = "eth"
address = "{W1}"
class = "futures"
custodian = "Example Trust Co"
approvers = ["{A1}", "{A2}"]
threshold = 2
allowed_spenders = ["{SPENDER}"]

[wallets.house]
chain = "eth"
address = "{W2}"
class = "house"

[segregation]
haircut_floor = "0.20"
timezone = "America/Chicago"

[segregation.targets]
futures = "250000"
cleared_swaps = "100000"
foreign_futures = "50000"

[surveillance]
inflow_grace = "1d"
max_fee = "0.05"

[presign]
delegatecall_allowlist = ["0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"]

[watch]
enabled = true
poll_interval = "1s"
max_lag = "2m"

[audit]
key_env = "RECONCILER_AUDIT_KEY"

[schedule]
timezone = "America/Chicago"
run = "*/5 * * * *"
scan = "30s"
segregation_statement = "0 17 * * mon-fri"
shards = 4

[[alerts.webhooks]]
url = "https://hooks.example/a"
secret_env = "RECONCILER_WEBHOOK_SECRET"
min_severity = "error"

[[alerts.webhooks]]
url = "https://hooks.example/b"

[metrics]
listen = "127.0.0.1:9464"
"""
    s = _load(tmp_path, text)

    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'ledger.db'}"
    chain = s.chains["eth"]
    assert chain.rpc_urls == ("http://127.0.0.1:8545", "https://backup.example/rpc")
    assert chain.confirmations == 12
    assert chain.read_path == "batch"
    assert chain.rpc_retries == 3
    assert chain.cross_check is True
    assert chain.start_block == 1000
    assert chain.ws_url == "ws://127.0.0.1:8545"
    assert chain.max_fee == 10**17 and s.max_fee("eth") == 10**17

    usdc = s.assets["USDC"]
    assert usdc.price_usd == Decimal("1.00")
    assert usdc.haircut == Decimal("0.25")
    assert usdc.dco_haircuts == (Decimal("0.02"), Decimal("0.05"))
    assert usdc.tolerance == 10
    assert usdc.issuer == "Example Issuer"
    assert usdc.freeze_check == "isBlacklisted"
    assert usdc.pause_check is True
    assert usdc.price_max_age == timedelta(hours=24)

    mmf = s.assets["MMF"]
    assert mmf.kind is AssetKind.MMF
    assert mmf.price_feed == FEED
    assert mmf.fund_family == "Example Funds"
    assert mmf.government_fund is True
    assert mmf.price_max_age == timedelta(minutes=10)
    assert mmf.issuer_standard == "erc3643" and usdc.issuer_standard == "none"

    assert s.assets["ETH"].decimals == 18

    wallet = s.wallets["cust-seg-1"]
    assert wallet.custodian == "Example Trust Co"
    assert wallet.approvers == (A1, A2)
    assert wallet.threshold == 2
    assert wallet.allowed_spenders == (SPENDER,)
    assert s.wallets["house"].seg_class is SegClass.HOUSE

    assert s.segregation.haircut_floor == Decimal("0.20")
    assert s.segregation.timezone == "America/Chicago"
    assert dict(s.segregation.targets) == {
        SegClass.FUTURES: Decimal("250000"),
        SegClass.CLEARED_SWAPS: Decimal("100000"),
        SegClass.FOREIGN_FUTURES: Decimal("50000"),
    }
    assert s.surveillance.inflow_grace == timedelta(days=1)
    assert s.surveillance.max_fee == 5 * 10**16
    assert s.presign.delegatecall_allowlist == ("0x40A2aCCbd92BCA938b02010E17A5b8929b49130D",)
    assert s.watch.enabled is True and s.watch.poll_interval == timedelta(seconds=1)
    assert s.watch.max_lag == timedelta(minutes=2)
    assert s.audit.key_env == "RECONCILER_AUDIT_KEY"
    assert s.schedule.shards == 4

    assert s.schedule.timezone == "America/Chicago"
    assert s.schedule.run == "*/5 * * * *"
    assert s.schedule.scan == "30s"
    assert s.schedule.segregation_statement == "0 17 * * mon-fri"

    assert len(s.webhooks) == 2
    assert s.webhooks[0].url == "https://hooks.example/a"
    assert s.webhooks[0].secret_env == "RECONCILER_WEBHOOK_SECRET"
    assert s.webhooks[0].min_severity is Severity.ERROR
    assert s.webhooks[1].secret_env is None
    assert s.webhooks[1].min_severity is Severity.ERROR

    assert s.metrics_listen == "127.0.0.1:9464"


def test_read_path_multicall_and_tolerance_as_integer(tmp_path: Path) -> None:
    text = MINIMAL.replace("chain_id = 31337", 'chain_id = 31337\nread_path = "multicall"').replace(
        "decimals = 6", "decimals = 6\ntolerance = 5"
    )
    s = _load(tmp_path, text)
    assert s.chains["eth"].read_path == "multicall"
    assert s.assets["USDC"].tolerance == 5


# ----------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("text", "bad_key", "suggested"),
    [
        (
            MINIMAL.replace("chain_id = 31337", "chain_id = 31337\nconfirmation = 1"),
            "chains.eth.confirmation",
            "confirmations",
        ),
        (MINIMAL.replace("decimals = 6", "decimal = 6"), "assets.USDC.decimal", "decimals"),
        (MINIMAL.replace('class = "futures"', 'class = "futures"\napprover = []'), "wallets.w1.approver", "approvers"),
        (MINIMAL + '\n[walets.x]\nchain = "eth"\n', "walets", "wallets"),
        (MINIMAL + '\n[segregation]\nhaircut_flor = "0.2"\n', "segregation.haircut_flor", "haircut_floor"),
        (
            MINIMAL + '\n[[alerts.webhooks]]\nurl = "https://h.example"\nmin_severty = "error"\n',
            "alerts.webhooks[0].min_severty",
            "min_severity",
        ),
        (MINIMAL + '\n[schedule]\nscna = "30s"\n', "schedule.scna", "scan"),
        (MINIMAL + '\n[surveillance]\ninflow_grase = "1h"\n', "surveillance.inflow_grase", "inflow_grace"),
        (MINIMAL.replace("chain_id = 31337", "chain_id = 31337\nrpc_retry = 3"), "chains.eth.rpc_retry", "rpc_retries"),
    ],
)
def test_unknown_key_is_rejected_with_a_suggestion(tmp_path: Path, text: str, bad_key: str, suggested: str) -> None:
    message = _error(tmp_path, text)
    assert f"unknown key '{bad_key}'" in message
    assert f"did you mean '{suggested}'" in message


def test_unknown_key_without_a_close_match_lists_known_keys(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace("chain_id = 31337", "chain_id = 31337\nzzz = 1"))
    assert "chains.eth.zzz" in message
    assert "known keys" in message and "confirmations" in message


# ----------------------------------------------------------------------------- addresses


def test_lowercase_wallet_address_is_rejected_with_the_checksummed_form(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace(W1, W1.lower()))
    assert "wallets.w1.address" in message
    assert W1 in message


def test_wrongly_cased_token_address_is_rejected_with_the_checksummed_form(tmp_path: Path) -> None:
    wrong = "0x1773E1dDF200EFB0fafC1E372028AA623f95d2DE"
    assert wrong != USDC and wrong.lower() == USDC.lower()
    message = _error(tmp_path, MINIMAL.replace(USDC, wrong))
    assert "assets.USDC.address" in message
    assert USDC in message


def test_lowercase_approver_is_rejected_naming_its_index(tmp_path: Path) -> None:
    text = MINIMAL.replace('class = "futures"', f'class = "futures"\napprovers = ["{A1}", "{A2.lower()}"]')
    message = _error(tmp_path, text)
    assert "wallets.w1.approvers[1]" in message
    assert A2 in message


def test_malformed_address_is_rejected(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace(W1, W1[:-2]))
    assert "wallets.w1.address" in message
    assert "20-byte" in message


# ----------------------------------------------------------------------------- quoted money


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("haircut = 0.02", "haircut"),
        ("price_usd = 1.0", "price_usd"),
        ("price_usd = 1", "price_usd"),
        ("dco_haircuts = [0.02]", "dco_haircuts[0]"),
    ],
)
def test_unquoted_number_for_money_is_rejected_with_quoting_advice(tmp_path: Path, line: str, key: str) -> None:
    message = _error(tmp_path, MINIMAL.replace("decimals = 6", f"decimals = 6\n{line}"))
    assert f"assets.USDC.{key}" in message
    assert "quoted string" in message
    value = line.split("= ", 1)[1].strip("[]")
    assert f'"{value}"' in message


def test_unquoted_segregation_target_is_rejected(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + "\n[segregation.targets]\nfutures = 250000\n")
    assert "segregation.targets.futures" in message
    assert "quoted string" in message


@pytest.mark.parametrize("value", ['"1.5"', '"-0.1"', '"2%"', '"abc"'])
def test_haircut_must_be_a_fraction_below_one(tmp_path: Path, value: str) -> None:
    message = _error(tmp_path, MINIMAL.replace("decimals = 6", f"decimals = 6\nhaircut = {value}"))
    assert "assets.USDC.haircut" in message


# ----------------------------------------------------------------------------- required keys


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MINIMAL.replace("chain_id = 31337\n", ""), "chains.eth.chain_id"),
        (MINIMAL.replace('rpc_urls = ["http://127.0.0.1:8545"]\n', ""), "chains.eth.rpc_urls"),
        (MINIMAL.replace('kind = "evm"\n', ""), "chains.eth.kind"),
        (MINIMAL.replace(f'address = "{USDC}"\n', ""), "assets.USDC.address"),
        (MINIMAL.replace("decimals = 6\n", ""), "assets.USDC.decimals"),
        (MINIMAL.replace('kind = "stablecoin"\n', ""), "assets.USDC.kind"),
        (MINIMAL.replace('class = "futures"\n', ""), "wallets.w1.class"),
        (MINIMAL.replace(f'address = "{W1}"\n', ""), "wallets.w1.address"),
    ],
)
def test_missing_required_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    message = _error(tmp_path, text)
    assert "missing required key" in message
    assert f"'{key}'" in message


def test_no_chain_at_all_is_rejected(tmp_path: Path) -> None:
    assert "no chains configured" in _error(tmp_path, "")


def test_empty_rpc_urls_is_rejected(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace('["http://127.0.0.1:8545"]', "[]"))
    assert "chains.eth.rpc_urls" in message


def test_bad_wallet_class_suggests_the_right_one(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace('class = "futures"', 'class = "future"'))
    assert "wallets.w1.class" in message
    assert "did you mean 'futures'" in message


# ----------------------------------------------------------------------------- native assets


def test_native_asset_with_an_address_is_rejected(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace("native = true", f'native = true\naddress = "{MMF}"'))
    assert "assets.ETH" in message
    assert "no address" in message


def test_native_asset_with_decimals_other_than_18_is_rejected(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace("native = true", "native = true\ndecimals = 8"))
    assert "assets.ETH.decimals" in message
    assert "18" in message


def test_two_native_assets_on_one_chain_are_rejected(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + '\n[assets.ETH2]\nchain = "eth"\nnative = true\nkind = "native"\n')
    assert "native" in message and "'eth'" in message


# ----------------------------------------------------------------------------- references


def test_asset_on_an_unknown_chain_suggests_the_configured_one(tmp_path: Path) -> None:
    text = MINIMAL.replace('[assets.USDC]\nchain = "eth"', '[assets.USDC]\nchain = "eht"')
    message = _error(tmp_path, text)
    assert "assets.USDC.chain" in message
    assert "did you mean 'eth'" in message


def test_asset_on_a_far_unknown_chain_lists_the_configured_ones(tmp_path: Path) -> None:
    text = MINIMAL.replace('[assets.USDC]\nchain = "eth"', '[assets.USDC]\nchain = "polygon"')
    message = _error(tmp_path, text)
    assert "assets.USDC.chain" in message and "'polygon'" in message
    assert "eth" in message.split("polygon", 2)[-1]


def test_wallet_on_an_unknown_chain_is_rejected(tmp_path: Path) -> None:
    text = MINIMAL.replace('[wallets.w1]\nchain = "eth"', '[wallets.w1]\nchain = "eht"')
    message = _error(tmp_path, text)
    assert "wallets.w1.chain" in message
    assert "did you mean 'eth'" in message


def test_threshold_above_the_number_of_approvers_is_rejected(tmp_path: Path) -> None:
    text = MINIMAL.replace('class = "futures"', f'class = "futures"\napprovers = ["{A1}"]\nthreshold = 2')
    message = _error(tmp_path, text)
    assert "wallets.w1.threshold" in message
    assert "1 approver" in message


def test_threshold_equal_to_the_number_of_approvers_is_accepted(tmp_path: Path) -> None:
    text = MINIMAL.replace('class = "futures"', f'class = "futures"\napprovers = ["{A1}", "{A2}"]\nthreshold = 2')
    assert _load(tmp_path, text).wallets["w1"].threshold == 2


def test_duplicate_wallet_address_on_one_chain_is_rejected(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + f'\n[wallets.w2]\nchain = "eth"\naddress = "{W1}"\nclass = "house"\n')
    assert "wallets.w2.address" in message and "wallets.w1" in message


def test_duplicate_chain_id_is_rejected(tmp_path: Path) -> None:
    text = MINIMAL + '\n[chains.other]\nkind = "evm"\nrpc_urls = ["http://127.0.0.1:8546"]\nchain_id = 31337\n'
    message = _error(tmp_path, text)
    assert "chains.other.chain_id" in message and "chains.eth" in message


# ----------------------------------------------------------------------------- locating the file


def test_explicit_path_beats_env_which_beats_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = _write(tmp_path, MINIMAL.replace("31337", "1"), "explicit.toml")
    from_env = _write(tmp_path, MINIMAL.replace("31337", "2"), "env.toml")
    cwd = tmp_path / "work"
    cwd.mkdir()
    _write(cwd, MINIMAL.replace("31337", "3"))
    monkeypatch.chdir(cwd)

    assert load_settings(None).chains["eth"].chain_id == 3
    monkeypatch.setenv("RECONCILER_CONFIG", str(from_env))
    assert load_settings(None).chains["eth"].chain_id == 2
    assert load_settings(str(explicit)).chains["eth"].chain_id == 1
    assert load_settings(str(explicit)).path == explicit


def test_explicit_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path / "missing.toml"))


def test_env_path_that_does_not_exist_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml"):
        load_settings(None)


def test_no_configuration_anywhere_mentions_the_config_option() -> None:
    with pytest.raises(ConfigError) as exc_info:
        load_settings(None)
    message = str(exc_info.value)
    assert "--config" in message
    assert "RECONCILER_CONFIG" in message


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    message = _error(tmp_path, "[chains.eth\nkind = ")
    assert "not valid TOML" in message


# ----------------------------------------------------------------------------- database URL


def test_database_url_env_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = MINIMAL + '\n[database]\nurl = "postgresql+psycopg://file@db/one"\n'
    assert _load(tmp_path, text).database_url == "postgresql+psycopg://file@db/one"
    monkeypatch.setenv("RECONCILER_DATABASE_URL", "postgresql+psycopg://env@db/two")
    assert _load(tmp_path, text).database_url == "postgresql+psycopg://env@db/two"


def test_relative_sqlite_path_resolves_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = _write(conf_dir, MINIMAL + '\n[database]\nurl = "sqlite:///x.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # Given relative to the working directory, the file still anchors the database path.
    relative = Path("..") / "conf" / "reconciler.toml"
    s = load_settings(str(relative))
    assert s.database_url == f"sqlite:///{(conf_dir / 'x.db').resolve()}"
    assert load_settings(str(path)).database_url == s.database_url


def test_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    absolute = f"sqlite:///{tmp_path / 'abs.db'}"
    assert _load(tmp_path, MINIMAL + f'\n[database]\nurl = "{absolute}"\n').database_url == absolute


IN_MEMORY = ["sqlite:///:memory:", "sqlite://", "sqlite:///", "sqlite:///:memory:?cache=shared"]


@pytest.mark.parametrize("url", IN_MEMORY)
def test_in_memory_sqlite_in_the_file_is_refused(tmp_path: Path, url: str) -> None:
    message = _error(tmp_path, MINIMAL + f'\n[database]\nurl = "{url}"\n')
    assert message.startswith("database.url = ")
    assert "in-memory" in message and "cannot keep a ledger" in message
    assert "give a file path" in message


@pytest.mark.parametrize("url", IN_MEMORY)
def test_in_memory_sqlite_from_the_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("RECONCILER_DATABASE_URL", url)
    message = _error(tmp_path, MINIMAL)
    assert message.startswith("RECONCILER_DATABASE_URL = ")
    assert "in-memory" in message and "give a file path" in message


def test_a_bad_url_in_the_file_is_refused_even_when_the_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert "database.url" in _error(tmp_path, MINIMAL + '\n[database]\nurl = "sqlite://"\n')


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:hunter2@db/ledger",
        "mongodb://root:hunter2@db/ledger",
        "root:hunter2@db/ledger",
        "SQLITE:///x.db",
    ],
)
def test_an_unsupported_scheme_names_the_supported_ones_without_the_password(tmp_path: Path, url: str) -> None:
    message = _error(tmp_path, MINIMAL + f'\n[database]\nurl = "{url}"\n')
    assert "database.url" in message
    assert "sqlite:///PATH" in message and "postgresql+psycopg://" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:hunter2@db/ledger",
        "postgres://app:hunter2@db/ledger",
        "postgresql+psycopg2://app:hunter2@db/l",
    ],
)
def test_postgresql_without_the_psycopg_driver_is_refused_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("RECONCILER_DATABASE_URL", url)
    message = _error(tmp_path, MINIMAL)
    assert "RECONCILER_DATABASE_URL" in message
    assert "write postgresql+psycopg://" in message
    assert "hunter2" not in message and "app:***@db" in message


def test_sqlite_url_with_two_slashes_and_a_path_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + '\n[database]\nurl = "sqlite://ledger.db"\n')
    assert "database.url" in message and "sqlite:///PATH" in message


def test_postgresql_psycopg_url_is_accepted(tmp_path: Path) -> None:
    text = MINIMAL + '\n[database]\nurl = "postgresql+psycopg://app:pw@db:5432/ledger"\n'
    assert _load(tmp_path, text).database_url == "postgresql+psycopg://app:pw@db:5432/ledger"


# ----------------------------------------------------------------------------- numbers in range


@pytest.mark.parametrize("value", ["nan", "inf", "+inf", "-inf", "0", "0.0", "-1", "3601", "1e9", '"10"', "true"])
def test_rpc_timeout_must_be_finite_positive_and_at_most_an_hour(tmp_path: Path, value: str) -> None:
    message = _error(tmp_path, MINIMAL.replace("chain_id = 31337", f"chain_id = 31337\nrpc_timeout = {value}"))
    assert message.startswith("chains.eth.rpc_timeout")
    assert "3600" in message


@pytest.mark.parametrize(("value", "seconds"), [("2.5", 2.5), ("3600", 3600.0), ("0.001", 0.001), ("10", 10.0)])
def test_rpc_timeout_in_range_is_accepted(tmp_path: Path, value: str, seconds: float) -> None:
    text = MINIMAL.replace("chain_id = 31337", f"chain_id = 31337\nrpc_timeout = {value}")
    assert _load(tmp_path, text).chains["eth"].rpc_timeout == seconds


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("rpc_retries = 11", "rpc_retries"),
        ("rpc_retries = -1", "rpc_retries"),
        ('rpc_retries = "2"', "rpc_retries"),
        ("start_block = -1", "start_block"),
        ("start_block = 1.5", "start_block"),
        ('cross_check = "yes"', "cross_check"),
    ],
)
def test_chain_resilience_keys_are_validated(tmp_path: Path, line: str, key: str) -> None:
    message = _error(tmp_path, MINIMAL.replace("chain_id = 31337", f"chain_id = 31337\n{line}"))
    assert message.startswith(f"chains.eth.{key}")


def test_rpc_retries_bounds_are_accepted(tmp_path: Path) -> None:
    for n in (0, 10):
        text = MINIMAL.replace("chain_id = 31337", f"chain_id = 31337\nrpc_retries = {n}\nstart_block = 0")
        chain = _load(tmp_path, text).chains["eth"]
        assert (chain.rpc_retries, chain.start_block) == (n, 0)


def test_cross_check_needs_two_rpc_urls(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace("chain_id = 31337", "chain_id = 31337\ncross_check = true"))
    assert "chains.eth.cross_check needs at least two rpc_urls" in message


def test_tolerance_of_thousands_of_digits_is_a_config_error(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace("decimals = 6", f'decimals = 6\ntolerance = "{"9" * 5000}"'))
    assert "assets.USDC.tolerance" in message


def test_an_integer_too_long_for_python_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace("chain_id = 31337", f"chain_id = {'1' * 5000}"))
    assert "not valid TOML" in message


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(MINIMAL.replace("evm", "\xe9vm").encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(str(path))


def test_rpc_url_errors_do_not_show_the_url(tmp_path: Path) -> None:
    text = MINIMAL.replace('"http://127.0.0.1:8545"', '"wss://node.example/v2/SECRETKEY"')
    message = _error(tmp_path, text)
    assert "chains.eth.rpc_urls[0]" in message and "http://" in message
    assert "SECRETKEY" not in message


def test_a_name_longer_than_its_column_is_refused(tmp_path: Path) -> None:
    long_name = "w" * 201
    message = _error(tmp_path, MINIMAL.replace("[wallets.w1]", f"[wallets.{long_name}]"))
    assert "at most 200" in message
    assert _load(tmp_path, MINIMAL.replace("[wallets.w1]", f"[wallets.{'w' * 200}]")).wallets


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("24h", timedelta(hours=24)),
        ("1d", timedelta(days=1)),
        ("0s", timedelta(0)),
        ("366d", timedelta(days=366)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "1h30m", "1.5h", "-1h", "1 h", "1H", "1w", "h", "367d", "9" * 5000 + "s"])
def test_parse_duration_refuses_other_forms(text: str) -> None:
    with pytest.raises(ValueError, match="duration|days"):
        parse_duration(text)


@given(st.text(max_size=30))
def test_parse_duration_raises_only_value_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert timedelta(0) <= value <= timedelta(days=366)


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("asset", "price_max_age = 3600", "assets.USDC.price_max_age"),
        ("asset", 'price_max_age = "1 hour"', "assets.USDC.price_max_age"),
        ("asset", "price_max_age = 1.5", "assets.USDC.price_max_age"),
        ("asset", 'price_max_age = "0s"', "assets.USDC.price_max_age"),
        ("surveillance", "inflow_grace = 86400", "surveillance.inflow_grace"),
        ("surveillance", 'inflow_grace = "24"', "surveillance.inflow_grace"),
        ("surveillance", 'inflow_grace = "-1h"', "surveillance.inflow_grace"),
    ],
)
def test_durations_must_be_quoted_and_well_formed(tmp_path: Path, section: str, line: str, key: str) -> None:
    if section == "asset":
        text = MINIMAL.replace("decimals = 6", f"decimals = 6\n{line}")
    else:
        text = MINIMAL + f"\n[surveillance]\n{line}\n"
    message = _error(tmp_path, text)
    assert message.startswith(key)
    assert '"30s"' in message or "at least" in message


def test_unquoted_duration_suggests_the_quoted_form(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + "\n[surveillance]\ninflow_grace = 86400\n")
    assert 'inflow_grace = "86400s"' in message


def test_zero_inflow_grace_is_allowed(tmp_path: Path) -> None:
    s = _load(tmp_path, MINIMAL + '\n[surveillance]\ninflow_grace = "0s"\n')
    assert s.surveillance.inflow_grace == timedelta(0)


# ----------------------------------------------------------------------------- schedule, alerts, metrics


@pytest.mark.parametrize(
    ("spec", "interval"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("*/5 * * * *", None),
        ("0 17 * * mon-fri", None),
        ("0,30 8-17 1 JAN-DEC *", None),
    ],
)
def test_schedule_accepts_cron_and_intervals(tmp_path: Path, spec: str, interval: timedelta | None) -> None:
    s = _load(tmp_path, MINIMAL + f'\n[schedule]\nrun = "{spec}"\n')
    assert s.schedule.run == spec
    assert schedule_interval(spec) == interval


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('scan = "*/5 * * *"', "4 field(s)"),
        ('scan = "0 17 * * mon-fri 2026"', "6 field(s)"),
        ('scan = "every 5 minutes"', "3 field(s)"),
        ('scan = "0 17 * * mon;fri"', "characters"),
        ('scan = "0s"', "at least 1s"),
        ("scan = 30", "quoted string"),
    ],
)
def test_schedule_refuses_what_is_neither_cron_nor_interval(tmp_path: Path, line: str, needle: str) -> None:
    message = _error(tmp_path, MINIMAL + f"\n[schedule]\n{line}\n")
    assert message.startswith("schedule.scan")
    assert needle in message


@pytest.mark.parametrize("section", ["schedule", "segregation"])
def test_timezone_must_exist(tmp_path: Path, section: str) -> None:
    message = _error(tmp_path, MINIMAL + f'\n[{section}]\ntimezone = "America/Chicgo"\n')
    assert message.startswith(f"{section}.timezone")
    assert "did you mean 'America/Chicago'" in message


@pytest.mark.parametrize("listen", ["127.0.0.1:9464", "localhost:1", "[::1]:9464", "0.0.0.0:65535"])
def test_metrics_listen_accepts_host_and_port(tmp_path: Path, listen: str) -> None:
    assert _load(tmp_path, MINIMAL + f'\n[metrics]\nlisten = "{listen}"\n').metrics_listen == listen


@pytest.mark.parametrize("listen", ["9464", ":9464", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "::1:9464", "h:x"])
def test_metrics_listen_refuses_what_is_not_host_and_port(tmp_path: Path, listen: str) -> None:
    message = _error(tmp_path, MINIMAL + f'\n[metrics]\nlisten = "{listen}"\n')
    assert message.startswith("metrics.listen") and "HOST:PORT" in message


def test_webhook_url_must_be_http(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + '\n[[alerts.webhooks]]\nurl = "ftp://user:hunter2@h.example/x"\n')
    assert message.startswith("alerts.webhooks[0].url") and "https://" in message
    assert "hunter2" not in message


def test_webhook_secret_env_must_name_a_variable_and_is_never_echoed(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[alerts.webhooks]]\nurl = "https://h.example"\nsecret_env = "s3cr3t-value!"\n'
    message = _error(tmp_path, text)
    assert message.startswith("alerts.webhooks[0].secret_env") and "environment variable" in message
    assert "s3cr3t-value!" not in message


# ----------------------------------------------------------------------------- issuer controls


def test_freeze_check_is_a_function_name(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace("decimals = 6", 'decimals = 6\nfreeze_check = "isBlacklisted(address)"'))
    assert message.startswith("assets.USDC.freeze_check")
    assert "write only the name: 'isBlacklisted'" in message


@pytest.mark.parametrize("line", ['freeze_check = "isFrozen"', "pause_check = true"])
def test_issuer_controls_on_a_native_coin_are_refused(tmp_path: Path, line: str) -> None:
    message = _error(tmp_path, MINIMAL.replace("native = true", f"native = true\n{line}"))
    assert message.startswith("assets.ETH." + line.split(" ", 1)[0])


@pytest.mark.parametrize("line", ['fund_family = "Funds"', "government_fund = true"])
def test_fund_keys_apply_to_money_market_funds_only(tmp_path: Path, line: str) -> None:
    message = _error(tmp_path, MINIMAL.replace("decimals = 6", f"decimals = 6\n{line}"))
    assert message.startswith("assets.USDC." + line.split(" ", 1)[0]) and "mmf" in message


def test_database_lock_timeout_is_a_duration(tmp_path: Path) -> None:
    s = _load(tmp_path, MINIMAL + '\n[database]\nurl = "sqlite:///x.db"\nlock_timeout = "1s"\n')
    assert s.lock_timeout == 1.0
    message = _error(tmp_path, MINIMAL + "\n[database]\nlock_timeout = 30\n")
    assert message.startswith("database.lock_timeout") and 'lock_timeout = "30s"' in message


def test_defaults_of_the_execution_watch_and_audit_keys(tmp_path: Path) -> None:
    s = _load(tmp_path, MINIMAL)
    assert s.surveillance.max_fee == 5 * 10**16 and s.max_fee("eth") == 5 * 10**16
    assert s.presign.delegatecall_allowlist == ()
    assert (s.watch.enabled, s.watch.poll_interval, s.watch.max_lag) == (
        False,
        timedelta(seconds=1),
        timedelta(minutes=2),
    )
    assert s.audit.key_env is None and s.schedule.shards == 1
    assert s.chains["eth"].ws_url is None and s.assets["USDC"].issuer_standard == "none"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('[surveillance]\nmax_fee = 0.05\n', "surveillance.max_fee must be a quoted string"),
        ('[surveillance]\nmax_fee = "0.0000000000000000001"\n', "surveillance.max_fee"),
        ('[presign]\ndelegatecall_allowlist = ["0x40a2accbd92bca938b02010e17a5b8929b49130d"]\n', "checksum"),
        ("[schedule]\nshards = 0\n", "schedule.shards"),
        ('[watch]\nenabled = "yes"\n', "watch.enabled"),
        ('[watch]\npoll_interval = "1"\n', "watch.poll_interval"),
        ('[audit]\nkey_env = "has space"\n', "audit.key_env"),
        ('[watch]\nenabeld = true\n', "did you mean"),
    ],
)
def test_new_keys_are_validated_like_the_others(tmp_path: Path, extra: str, named: str) -> None:
    assert named in _error(tmp_path, MINIMAL + extra)


def test_ws_url_and_issuer_standard_are_validated(tmp_path: Path) -> None:
    bad_ws = CHAIN.replace("chain_id = 31337", 'chain_id = 31337\nws_url = "http://127.0.0.1:8545"')
    assert "ws_url" in _error(tmp_path, bad_ws + USDC_ASSET + WALLET)
    bad_std = USDC_ASSET + 'issuer_standard = "erc20"\n'
    message = _error(tmp_path, CHAIN + bad_std + WALLET)
    assert "issuer_standard" in message and "erc3643" in message
    native_std = ETH_ASSET + 'issuer_standard = "erc3643"\n'
    assert "issuer_standard" in _error(tmp_path, CHAIN + native_std + WALLET)


def test_alerts_max_pending_age_defaults_to_five_minutes_and_is_read_with_the_webhooks(tmp_path: Path) -> None:
    assert _load(tmp_path, MINIMAL).alert_max_pending_age == timedelta(minutes=5)
    text = MINIMAL + '\n[alerts]\nmax_pending_age = "90s"\n\n[[alerts.webhooks]]\nurl = "https://hooks.example/a"\n'
    settings = _load(tmp_path, text)
    assert settings.alert_max_pending_age == timedelta(seconds=90)
    assert [w.url for w in settings.webhooks] == ["https://hooks.example/a"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("max_pending_age = 300", 'alerts.max_pending_age must be a quoted duration like "30s", "10m", "24h" '
         '(write max_pending_age = "300s")'),
        ('max_pending_age = "5"', "alerts.max_pending_age: "),
        ('max_pending_age = "0s"', "alerts.max_pending_age = '0s' must be at least 1s"),
        ('max_pending_age = "-5m"', "alerts.max_pending_age: "),
    ],
)
def test_a_bad_max_pending_age_names_the_key(tmp_path: Path, line: str, expected: str) -> None:
    assert _error(tmp_path, MINIMAL + f"\n[alerts]\n{line}\n").startswith(expected)


def test_an_unknown_alerts_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + '\n[alerts]\nmax_pending_ag = "5m"\n')
    assert "alerts.max_pending_ag" in message and "max_pending_age" in message
