"""`report html`'s page (a pure function of documents) and its `explorer_url` configuration."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from reconciler.app.report_html import PageContext, grouped, render_run_report
from reconciler.errors import ConfigError
from reconciler.inputs.config import load_settings

W1 = "0xeA3E1C24BBC66C2a2f4DE96e35920F0e1984cFa7"
BLOCK_HASH = "0x" + "ab" * 32
TX = "0x" + "cd" * 32
EVIL = "<script>alert('x')</script>&\""

CONFIG = f"""
[chains.eth]
kind = "evm"
rpc_urls = ["http://127.0.0.1:8545"]
chain_id = 31337
{{explorer}}

[assets.ETH]
chain = "eth"
native = true
kind = "native"

[wallets.w1]
chain = "eth"
address = "{W1}"
class = "futures"
"""


class _Page(HTMLParser):
    """What a browser would make of the page: its elements, links and text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.links += [v or "" for k, v in attrs if k == "href"]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def brk(severity: str, **kw: Any) -> dict[str, Any]:
    doc = {
        "id": f"brk-{severity}-0000-0000",
        "kind": "balance_mismatch",
        "severity": severity,
        "status": "open",
        "chain": "eth",
        "wallet": "w1",
        "asset": "TMMF",
        "amount": "-1234567890123456789012345678",
        "amount_display": "-1234567890.123456789012345678",
        "tx_hash": None,
        "detail": "on chain less than books",
        "block_number": 1234567,
        "block_hash": BLOCK_HASH,
        "first_run_id": "run-first",
        "last_run_id": "run-1",
        "resolved_run_id": None,
        "times_seen": 3,
    }
    doc.update(kw)
    return doc


def run_doc(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "run_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "status": "complete",
        "exit_code": 1,
        "reason": None,
        "started_at": "2026-11-24T16:59:58.123456+00:00",
        "trigger": "cli",
        "job": "run",
        "instance": "host:42",
        "chains": {
            "eth": {
                "block_number": 1234567,
                "block_hash": BLOCK_HASH,
                "chain_id": 1,
                "read_path": "multicall",
                "sources": [{"endpoint": "https://rpc.example", "client_version": "anvil/v1"}],
                "scan": {"from_block": 1234000, "to_block": 1234567, "observed": 2, "reorged": 0},
            }
        },
        "positions": [
            {
                "chain": "eth",
                "wallet": "w1",
                "asset": "TMMF",
                "book": "5000000000000000000000000000",
                "book_display": "5000000000.000000000000000000",
                "onchain": "3765432109876543210987654322",
                "onchain_display": "3765432109.876543210987654322",
                "difference": "-1234567890123456789012345678",
                "difference_display": "-1234567890.123456789012345678",
            },
            *(
                {
                    "chain": "eth",
                    "wallet": "w1",
                    "asset": f"A{i}",
                    "book": "0",
                    "book_display": "0.000000",
                    "onchain": "0",
                    "onchain_display": "0.000000",
                    "difference": "0",
                    "difference_display": "0.000000",
                }
                for i in range(4)
            ),
        ],
        "breaks": [
            brk("critical", kind="unauthorized_transfer", tx_hash=TX, amount="-5", amount_display="-0.000005"),
            brk("error"),
            brk("warning", kind="unexpected_inflow", amount="1000000", amount_display="1.000000"),
        ],
        "unreconciled_books": [],
    }
    doc.update(kw)
    return doc


def context(**kw: Any) -> PageContext:
    base: dict[str, Any] = {
        "generated_at": datetime(2026, 11, 25, 9, 30, tzinfo=UTC),
        "audit_head": "f" * 64,
        "finished_at": "2026-11-24T17:00:03+00:00",
        "explorers": {"eth": "https://etherscan.io"},
        "wallet_addresses": {"w1": W1},
    }
    base.update(kw)
    return PageContext(**base)


@pytest.mark.parametrize(
    ("display", "shown"),
    [
        ("0.000000", "0.000000"),
        ("-123.456789", "-123.456789"),
        ("1000000.500000", "1,000,000.500000"),
        ("-1234567890.123456789012345678", "-1,234,567,890.123456789012345678"),
        ("115792089237316195423570985008687907853269984665640564039457584007913129639935", None),
        ("100", "100"),
        ("1234", "1,234"),
        (None, "—"),
    ],
)
def test_amounts_keep_every_digit_and_gain_thousands_separators(display: str | None, shown: str | None) -> None:
    result = grouped(display)
    if shown is None:  # uint256 max: 78 digits, grouped, nothing lost
        assert display is not None and result.replace(",", "") == display and result.count(",") == 25
    else:
        assert result == shown


def test_the_page_shows_the_run_its_pin_breaks_by_severity_and_positions() -> None:
    page = render_run_report(run_doc(), [brk("error", status="acknowledged")], context())
    parsed = parse(page)
    text = " ".join(parsed.text)

    assert "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0" in text
    assert "2026-11-24 16:59:58 UTC" in text and "2026-11-24 17:00:03 UTC" in text
    assert ">1234567</a>" in page and BLOCK_HASH in text and "https://rpc.example" in text
    # The amount whole, with separators, in asset units; never cut short.
    assert "-1,234,567,890.123456789012345678" in text
    # Sections in order: critical, error, warning, info (empty ones say so).
    headings = re.findall(r"<h3[^>]*>([A-Za-z]+) \((\d+)\)</h3>", page)
    assert headings[:4] == [("Critical", "1"), ("Error", "1"), ("Warning", "1"), ("Info", "0")]
    # Positions: the one that differs in a table, the four that agree counted.
    assert "Book ≠ on chain (1)" in text and "4" in text and "of 5 position(s) agree" in text
    assert "f" * 64 in text  # the audit trail's head in the footer
    # Links to the configured explorer: block, tx, wallet address.
    assert "https://etherscan.io/block/1234567" in parsed.links
    assert f"https://etherscan.io/tx/{TX}" in parsed.links
    assert f"https://etherscan.io/address/{W1}" in parsed.links
    # Self-contained: nothing fetched, nothing run.
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    assert "default-src 'none'" in page


def test_without_an_explorer_nothing_is_linked_but_everything_is_shown() -> None:
    page = render_run_report(run_doc(), [], context(explorers={}))
    parsed = parse(page)
    assert parsed.links == []
    assert TX in " ".join(parsed.text)
    assert "No break is open or acknowledged." in page


def test_everything_a_person_wrote_is_escaped() -> None:
    evil_break = brk("error", status="acknowledged", detail=EVIL, wallet=EVIL, asset=EVIL, kind=EVIL)
    run = run_doc(
        status="incomplete",
        exit_code=2,
        reason=EVIL,
        instance=EVIL,
        breaks=[evil_break],
        chains={"eth": {"block_number": None, "block_hash": None, "error": EVIL, "sources": [{"endpoint": EVIL}]}},
    )
    page = render_run_report(run, [evil_break], context(notes={evil_break["id"]: EVIL}, wallet_addresses={EVIL: EVIL}))
    parsed = parse(page)
    assert "script" not in parsed.tags
    assert "<script>" not in page
    text = "".join(parsed.text)
    # Shown as the text it is: reason, note, detail, wallet, error, endpoint.
    assert text.count("<script>alert('x')</script>&\"") >= 7
    assert "INCOMPLETE" in text and "no all-clear" in text
    assert "not read" in text


def test_a_hostile_explorer_url_cannot_break_out_of_its_attribute() -> None:
    page = render_run_report(run_doc(), [], context(explorers={"eth": 'https://x.example/"><script>'}))
    assert "script" not in parse(page).tags


def _settings(tmp_path: Path, explorer: str) -> Any:
    path = tmp_path / "reconciler.toml"
    path.write_text(CONFIG.replace("{explorer}", explorer))
    return load_settings(str(path))


def test_explorer_url_is_optional_and_loses_its_trailing_slash(tmp_path: Path) -> None:
    assert _settings(tmp_path, "").chains["eth"].explorer_url is None
    settings = _settings(tmp_path, 'explorer_url = "https://etherscan.io/"')
    assert settings.chains["eth"].explorer_url == "https://etherscan.io"


@pytest.mark.parametrize(
    "value",
    ['"etherscan.io"', '"ftp://etherscan.io"', '"https://"', '"https://etherscan.io/?a=1"', "42", '""'],
)
def test_a_bad_explorer_url_is_rejected_naming_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, f"explorer_url = {value}")
    assert "chains.eth.explorer_url" in str(caught.value)


def test_a_misspelled_explorer_url_suggests_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, 'explorer_uri = "https://etherscan.io"')
    assert "did you mean 'explorer_url'" in str(caught.value)
