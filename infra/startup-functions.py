#!/usr/bin/env python3
"""Writes functions/startup-functions.txt: the functions a Lambda bootstrap runs from its start
to its first poll of the runtime API, which functions/link_bootstrap.rs links first, together
(BENCHMARKS.md, cold start). Run it from the repository root after a change of dependencies,
of the Rust toolchain or of what the functions do at start:

    python3 infra/startup-functions.py

It builds the three bootstraps with their symbols (target/startup-functions), starts each under
valgrind's callgrind against a runtime-API stub with the environment the benches give them
(tests/support/lambda.rs), keeps every function charged before the first `writev` (the poll),
and lists them by name without their hash, densest first: the names whose every match is run at
start, then those whose matches are mostly other instantiations of the same generic function.
Needs valgrind, nm and Python 3.
"""

import bisect
import os
import re
import socket
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "startup-functions")
FUNCTIONS = ["ingest", "step", "feedback"]
LIST = os.path.join(ROOT, "functions", "startup-functions.txt")
# Rust's legacy mangling ends a symbol with its hash, `17h` + 16 hex digits + `E`; LTO may add
# `.llvm.<n>`. What is kept is the name up to and including `17h`.
HASH = re.compile(r"17h[0-9a-f]{16}E(\.llvm\.\d+)?$")
LTO_SUFFIX = re.compile(r"\.llvm\.\d+$")


def lambda_environment():
    """The ENV constant of tests/support/lambda.rs: what the Lambda service and template.yaml set."""
    text = open(os.path.join(ROOT, "tests", "support", "lambda.rs"), encoding="utf-8").read()
    body = text.split("pub const ENV", 1)[1].split("];", 1)[0]
    pairs = dict(re.findall(r'\("([A-Z0-9_]+)",\s*"([^"]*)"\)', body))
    if "TABLE_NAME" not in pairs:
        sys.exit("error: could not read the ENV constant of tests/support/lambda.rs")
    return pairs


def serve_runtime_api():
    """A runtime API that answers every poll with a 500 (the bootstrap then stops)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve():
        while True:
            connection, _ = listener.accept()
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                request += chunk
            connection.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return "127.0.0.1:%d" % listener.getsockname()[1]


def executed_before_first_poll(binary, environment):
    """Names (as in the symbol table) of the functions callgrind charged before the first writev."""
    out = os.path.join(TARGET, os.path.basename(binary) + ".callgrind")
    for stale in [out, out + ".1"]:
        if os.path.exists(stale):
            os.remove(stale)
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--demangle=no", "--dump-before=writev", "--callgrind-out-file=" + out, binary],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
    )
    if not os.path.exists(out + ".1"):
        sys.exit("error: %s never polled the runtime API under callgrind" % binary)
    names, charged, current = {}, set(), None
    # Callgrind's name compression: "fn=(id) name" the first time, "fn=(id)" after.
    for line in open(out + ".1", encoding="utf-8", errors="replace"):
        match = re.match(r"(c?fn)=\((\d+)\)(?: (.+))?$", line.rstrip("\n"))
        if match:
            kind, ident, name = match.groups()
            if name:
                names[ident] = name
            if kind == "fn":
                current = ident
        elif current is not None and line[:1] in "0123456789+-*":
            charged.add(current)
    return {names[i] for i in charged if i in names}


def text_symbols(binary):
    """Every function symbol of the binary with its size."""
    listing = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


def listed_name(symbol):
    return LTO_SUFFIX.sub("", HASH.sub("17h", symbol))


def main():
    os.makedirs(TARGET, exist_ok=True)
    build = dict(os.environ, CARGO_TARGET_DIR=TARGET, CARGO_PROFILE_RELEASE_STRIP="false", AFTERCARE_STARTUP_ORDER="0")
    subprocess.run(["cargo", "build", "--release"] + sum([["-p", f] for f in FUNCTIONS], []), cwd=ROOT, env=build, check=True)
    environment = dict(lambda_environment(), AWS_LAMBDA_RUNTIME_API=serve_runtime_api(), RUST_BACKTRACE="0", PATH=os.environ.get("PATH", ""))
    # Per listed name: bytes run at start, bytes its pattern matches (the densest binary's).
    density = {}
    for function in FUNCTIONS:
        binary = os.path.join(TARGET, "release", function)
        sizes = text_symbols(binary)
        ordered = sorted(sizes)
        hot = {}
        for symbol in executed_before_first_poll(binary, environment) & sizes.keys():
            name = listed_name(symbol)
            hot[name] = hot.get(name, 0) + sizes[symbol]
        for name, hot_bytes in hot.items():
            first = bisect.bisect_left(ordered, name)
            last = bisect.bisect_left(ordered, name + "\U0010ffff")
            matched = sum(sizes[s] for s in ordered[first:last])
            ratio = hot_bytes / max(matched, 1)
            if ratio > density.get(name, (-1, 0))[0]:
                density[name] = (ratio, hot_bytes)
        print("%s: %d functions run before the first poll" % (function, len(hot)), file=sys.stderr)
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    names = sorted(density, key=lambda n: (-round(density[n][0], 2), n))
    with open(LIST, "w", encoding="utf-8") as out:
        out.write("# Functions the Lambda bootstraps run from their start to their first poll, densest first\n")
        out.write("# (functions/link_bootstrap.rs links them first). Made by infra/startup-functions.py with\n")
        out.write("# %s; a line is a symbol name up to its hash.\n" % rustc)
        for name in names:
            out.write(name + "\n")
    print("%d names written to %s" % (len(names), os.path.relpath(LIST, ROOT)), file=sys.stderr)


if __name__ == "__main__":
    main()
