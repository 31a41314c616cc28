#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs them.
# This is the README's test command and what CI runs (.ci/run calls this file).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build and test with the versions pinned in Cargo.lock.
cargo test --workspace --locked "$@"
