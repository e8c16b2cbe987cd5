#!/usr/bin/env node
// Compiles every contracts/src/*.sol with the pinned solcjs (0.8.28) and
// writes one artifact per contract to contracts/artifacts/<Contract>.json.
//
//   node contracts/compile.mjs                 write the artifacts
//   node contracts/compile.mjs --check         compare committed artifacts
//                                              with a fresh in-memory build
//   --src DIR / --out DIR                      override the source and
//                                              artifact folders
//
// Output is deterministic: sources are handed to solc under relative names
// ("src/<File>.sol") whatever folder they are read from, settings are fixed,
// and artifacts carry no timestamps or absolute paths.

import { createHash } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const REQUIRED_SOLC = "0.8.28";
const SCRIPT_DIR = path.dirname(fileURLToPath(import.meta.url));

// Everything that shapes the bytecode, besides the sources and the compiler.
const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
};

const USAGE = `usage: node contracts/compile.mjs [--check] [--src DIR] [--out DIR]

  (no flag)   compile contracts/src/*.sol and write contracts/artifacts/*.json,
              removing artifacts of contracts that no longer exist
  --check     compile in memory and compare with the artifacts on disk;
              exit 1 naming every contract whose artifact differs, is missing
              or is extra
  --src DIR   folder of the .sol sources   (default: <script dir>/src)
  --out DIR   folder of the artifacts      (default: <script dir>/artifacts)
`;

function fail(message, code = 1) {
  process.stderr.write(message.endsWith("\n") ? message : message + "\n");
  process.exit(code);
}

function parseArgs(argv) {
  const opts = {
    check: false,
    src: path.join(SCRIPT_DIR, "src"),
    out: path.join(SCRIPT_DIR, "artifacts"),
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--check") {
      opts.check = true;
    } else if (arg === "--src" || arg === "--out") {
      const value = argv[++i];
      if (value === undefined || value.startsWith("--")) {
        fail(`compile.mjs: ${arg} needs a folder\n\n${USAGE}`, 2);
      }
      opts[arg.slice(2)] = path.resolve(value);
    } else if (arg === "-h" || arg === "--help") {
      process.stdout.write(USAGE);
      process.exit(0);
    } else {
      fail(`compile.mjs: unknown argument ${JSON.stringify(arg)}\n\n${USAGE}`, 2);
    }
  }
  return opts;
}

function loadSolc() {
  const require = createRequire(import.meta.url);
  let solc;
  try {
    solc = require("solc");
  } catch (err) {
    fail(
      `compile.mjs: cannot load the solc package (${err.message}).\n` +
        "Install the pinned node tools with `npm ci` at the repository root.",
    );
  }
  const version = solc.version();
  if (!version.startsWith(REQUIRED_SOLC + "+")) {
    fail(
      `compile.mjs: loaded solc ${version}, but this project is pinned to ` +
        `${REQUIRED_SOLC} exactly. Reinstall with \`npm ci\`.`,
    );
  }
  return { solc, version };
}

// Stable, pretty JSON: object keys sorted recursively, arrays kept in order,
// 2-space indent, trailing newline.
function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    const sorted = {};
    for (const key of Object.keys(value).sort()) sorted[key] = sortKeys(value[key]);
    return sorted;
  }
  return value;
}

function stableJson(value) {
  return JSON.stringify(sortKeys(value), null, 2) + "\n";
}

function listSources(srcDir) {
  let entries;
  try {
    entries = fs.readdirSync(srcDir, { withFileTypes: true });
  } catch (err) {
    fail(`compile.mjs: cannot read source folder ${srcDir}: ${err.message}`);
  }
  const files = entries
    .filter((e) => e.isFile() && e.name.endsWith(".sol"))
    .map((e) => e.name)
    .sort();
  if (files.length === 0) fail(`compile.mjs: no .sol files in ${srcDir}`);
  return files;
}

function compile(solc, version, srcDir) {
  const files = listSources(srcDir);
  const sources = {};
  const sha256 = {};
  for (const file of files) {
    const bytes = fs.readFileSync(path.join(srcDir, file));
    const name = `src/${file}`;
    sources[name] = { content: bytes.toString("utf8") };
    sha256[name] = createHash("sha256").update(bytes).digest("hex");
  }

  const input = {
    language: "Solidity",
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
      },
    },
  };

  // Imports of other files in src/ are already in `sources`; anything else
  // (e.g. remote libraries) is not supported on purpose.
  const findImports = (importPath) => ({
    error: `import ${JSON.stringify(importPath)} not found: only files in src/ can be imported`,
  });

  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  let hasError = false;
  for (const diag of output.errors || []) {
    const text = diag.formattedMessage || `${diag.severity}: ${diag.message}`;
    process.stderr.write(text.endsWith("\n") ? text : text + "\n");
    if (diag.severity === "error") hasError = true;
  }
  if (hasError) fail("compile.mjs: compilation failed");

  const artifacts = new Map();
  for (const sourceName of Object.keys(output.contracts || {}).sort()) {
    const contracts = output.contracts[sourceName];
    for (const contractName of Object.keys(contracts).sort()) {
      if (artifacts.has(contractName)) {
        fail(
          `compile.mjs: contract name ${contractName} is defined in both ` +
            `${artifacts.get(contractName).source} and ${sourceName}; names must be unique`,
        );
      }
      const c = contracts[contractName];
      artifacts.set(contractName, {
        compiler: version,
        settings: SETTINGS,
        source: sourceName,
        source_sha256: sha256[sourceName],
        contract: contractName,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      });
    }
  }
  return artifacts;
}

function existingArtifacts(outDir) {
  if (!fs.existsSync(outDir)) return [];
  return fs
    .readdirSync(outDir, { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".json"))
    .map((e) => e.name.slice(0, -".json".length))
    .sort();
}

function describeDifference(expectedText, actualText) {
  let actual;
  try {
    actual = JSON.parse(actualText);
  } catch {
    return "artifact is not valid JSON";
  }
  const expected = JSON.parse(expectedText);
  const keys = [...new Set([...Object.keys(expected), ...Object.keys(actual)])].sort();
  const changed = keys.filter(
    (k) => JSON.stringify(sortKeys(expected[k])) !== JSON.stringify(sortKeys(actual[k])),
  );
  return changed.length ? `differs in ${changed.join(", ")}` : "differs in formatting";
}

function check(artifacts, outDir) {
  const problems = [];
  for (const [name, artifact] of artifacts) {
    const file = path.join(outDir, `${name}.json`);
    if (!fs.existsSync(file)) {
      problems.push(`${name}: missing artifact (${name}.json)`);
      continue;
    }
    const expectedText = stableJson(artifact);
    const actualText = fs.readFileSync(file, "utf8");
    if (actualText !== expectedText) {
      problems.push(`${name}: ${describeDifference(expectedText, actualText)}`);
    }
  }
  for (const name of existingArtifacts(outDir)) {
    if (!artifacts.has(name)) {
      problems.push(`${name}: extra artifact (${name}.json) with no contract in the sources`);
    }
  }
  if (problems.length) {
    process.stderr.write(
      "contract artifacts are out of date:\n" +
        problems.map((p) => `  ${p}\n`).join("") +
        "run `make contracts` (node contracts/compile.mjs) and commit contracts/artifacts/\n",
    );
    process.exit(1);
  }
  process.stdout.write(`contract artifacts up to date (${artifacts.size} contracts)\n`);
}

function write(artifacts, outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  for (const [name, artifact] of artifacts) {
    const file = path.join(outDir, `${name}.json`);
    const text = stableJson(artifact);
    const old = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : null;
    if (old !== text) {
      fs.writeFileSync(file, text);
      process.stdout.write(`wrote ${name}.json\n`);
    } else {
      process.stdout.write(`unchanged ${name}.json\n`);
    }
  }
  for (const name of existingArtifacts(outDir)) {
    if (!artifacts.has(name)) {
      fs.unlinkSync(path.join(outDir, `${name}.json`));
      process.stdout.write(`removed stale ${name}.json\n`);
    }
  }
}

const opts = parseArgs(process.argv.slice(2));
const { solc, version } = loadSolc();
const artifacts = compile(solc, version, opts.src);
if (opts.check) {
  check(artifacts, opts.out);
} else {
  write(artifacts, opts.out);
}
