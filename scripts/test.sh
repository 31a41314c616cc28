#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs them.
# This is the README's test command and what CI runs (.ci/run calls this file).
#
# The store's tests run on SQLite and on a PostgreSQL server they start themselves; the Slurm
# test starts a single-node Slurm cluster. Both need Debian packages, installed here when
# missing and when we are root (apt-get; quiet, and a no-op once they are there). Where they
# cannot be installed, those tests say what is missing and pass without running; where they
# were installed, LIFESWEEP_TEST_REQUIRE_* makes a test that would skip fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."

have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' > /dev/null; }
have_slurm() {
    local program
    for program in munged slurmctld slurmd sbatch squeue scancel scontrol sinfo; do
        command -v "$program" > /dev/null || [ -x "/usr/sbin/$program" ] || return 1
    done
}

packages=()
have_postgres || packages+=(postgresql)
have_slurm || packages+=(slurm-wlm munge)
if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get > /dev/null; then
        log=$(mktemp)
        echo "test.sh: installing ${packages[*]} for the PostgreSQL and Slurm tests (log: $log)"
        if DEBIAN_FRONTEND=noninteractive apt-get update -qq > "$log" 2>&1 \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${packages[@]}" >> "$log" 2>&1; then
            rm -f "$log"
        else
            echo "test.sh: installing ${packages[*]} failed; those tests will skip. Last lines of $log:"
            tail -n 5 "$log"
        fi
    else
        echo "test.sh: ${packages[*]} missing and cannot be installed here (needs root and apt-get); those tests will skip"
    fi
fi
if have_postgres; then export LIFESWEEP_TEST_REQUIRE_POSTGRES=1; fi
if have_slurm && [ "$(id -u)" -eq 0 ]; then export LIFESWEEP_TEST_REQUIRE_SLURM=1; fi
# The daemons live in /usr/sbin, which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

# Build and test with the versions pinned in Cargo.lock.
cargo test --workspace --locked "$@"
