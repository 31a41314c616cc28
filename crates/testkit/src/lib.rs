//! Test support shared by the integration tests of several crates: a real PostgreSQL server,
//! started once per test process from Debian's binaries (`/usr/lib/postgresql/*/bin`), in a
//! temporary directory, on a free loopback port, and stopped (its directory removed) when the
//! test process ends, however it ends; and [`Watched`], a daemon (munged, slurmctld, ...) that
//! likewise never outlives the test that started it.
//!
//! This crate is a dev-dependency only; nothing in the product links it. It does no SQL: a
//! test asks it for a URL and opens the database through the store.

mod postgres;
mod watched;

pub use postgres::{postgres, PgServer};
pub use watched::Watched;

use std::io::Write;

/// Prints a line on the test process's real standard error, past libtest's capture (a skipped
/// test passes, and the output of passing tests is otherwise hidden).
pub fn say(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}
