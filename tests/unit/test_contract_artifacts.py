"""The committed contract artifacts match what contracts/compile.mjs builds.

These tests run the real compiler script (solcjs 0.8.28 from node_modules)
against the real tree and against modified copies of it in tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = REPO_ROOT / "contracts"
SCRIPT = CONTRACTS / "compile.mjs"
SRC = CONTRACTS / "src"
ARTIFACTS = CONTRACTS / "artifacts"

EXPECTED_CONTRACTS = {
    "BeaconWalletProxy",
    "CodeSizes",
    "CollateralToken",
    "CustodyWallet",
    "CustodyWalletProxy",
    "MaliciousSingleton",
    "MappingWriter",
    "Multicall3",
    "PriceFeed",
    "SlotWriter",
    "TransientSingleton",
    "WalletBeacon",
}


def _node() -> str:
    node = shutil.which("node")
    assert node is not None, (
        "node is not on PATH: the contract artifact checks need Node.js (and `npm ci` at the repository root for solc)"
    )
    return node


def _run_compile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_node(), str(SCRIPT), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_tree(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    out = tmp_path / "artifacts"
    shutil.copytree(SRC, src)
    shutil.copytree(ARTIFACTS, out)
    return src, out


def _check_copy(src: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return _run_compile("--check", "--src", str(src), "--out", str(out))


def test_committed_artifacts_are_up_to_date() -> None:
    result = _run_compile("--check")
    assert result.returncode == 0, (
        f"contracts/artifacts is stale; run `make contracts`\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


def test_unmodified_copy_passes_check(tmp_path: Path) -> None:
    # The build does not depend on where the sources live.
    src, out = _copy_tree(tmp_path)
    result = _check_copy(src, out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_changed_source_fails_check_naming_the_contract(tmp_path: Path) -> None:
    src, out = _copy_tree(tmp_path)
    token = src / "CollateralToken.sol"
    text = token.read_text()
    body, closing = text.rsplit("}", 1)
    token.write_text(
        body + "\n    function version() external pure returns (uint256) {\n" + "        return 2;\n    }\n}" + closing
    )

    result = _check_copy(src, out)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "CollateralToken" in output
    assert "Multicall3" not in output
    assert "make contracts" in output


def test_missing_artifact_fails_check_naming_it(tmp_path: Path) -> None:
    src, out = _copy_tree(tmp_path)
    (out / "Multicall3.json").unlink()

    result = _check_copy(src, out)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Multicall3" in output
    assert "missing" in output
    assert "CollateralToken" not in output


def test_extra_artifact_fails_check_naming_it(tmp_path: Path) -> None:
    src, out = _copy_tree(tmp_path)
    shutil.copy(out / "CollateralToken.json", out / "OldVault.json")

    result = _check_copy(src, out)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "OldVault" in output
    assert "extra" in output


def test_compile_error_exits_1(tmp_path: Path) -> None:
    src, out = _copy_tree(tmp_path)
    (src / "Broken.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity 0.8.28;\n"
        "contract Broken { function f() external { undefinedName(); } }\n"
    )

    result = _check_copy(src, out)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "undefinedName" in result.stderr


def test_artifacts_record_compiler_and_source_hash() -> None:
    paths = sorted(ARTIFACTS.glob("*.json"))
    assert {p.stem for p in paths} == EXPECTED_CONTRACTS

    for path in paths:
        artifact = json.loads(path.read_text())
        assert artifact["contract"] == path.stem
        assert artifact["compiler"].startswith("0.8.28"), artifact["compiler"]
        assert artifact["settings"] == {
            "evmVersion": "cancun",
            "optimizer": {"enabled": True, "runs": 200},
        }
        source = CONTRACTS / artifact["source"]
        assert source.is_file(), f"{path.name} names missing source {artifact['source']}"
        assert artifact["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 2
        assert artifact["deployedBytecode"].startswith("0x")
        assert len(artifact["deployedBytecode"]) > 2
        # Written as sorted, 2-space-indented JSON with a trailing newline.
        assert path.read_text() == json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def test_the_code_sizes_probe_is_the_compiled_contract() -> None:
    """The runtime code the wallet reads place by state override is CodeSizes.sol as built."""
    import json

    from chains.evm import codesizes

    artifact = json.loads((Path(__file__).resolve().parents[2] / "contracts/artifacts/CodeSizes.json").read_text())
    assert codesizes.RUNTIME == artifact["deployedBytecode"]
    [fn] = [f for f in artifact["abi"] if f["type"] == "function"]
    assert fn["name"] == "sizes" and [i["type"] for i in fn["inputs"]] == ["address[]"]


def test_code_sizes_answers_are_taken_only_whole() -> None:
    from chains.evm import codesizes

    good = "0x" + (32).to_bytes(32, "big").hex() + (2).to_bytes(32, "big").hex() + (0).to_bytes(32, "big").hex() + (
        23
    ).to_bytes(32, "big").hex()
    assert codesizes.decode(good, 2) == [0, 23]
    for bad in (good[:-64], good + "00" * 32, "0x", None, good.replace("0x", "0X", 1), good[:-1] + "g", 7):
        assert codesizes.decode(bad, 2) is None, bad
    assert codesizes.decode(good, 3) is None
    wrong_offset = "0x" + (64).to_bytes(32, "big").hex() + good[66:]
    assert codesizes.decode(wrong_offset, 2) is None
