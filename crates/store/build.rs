// The schema is embedded by `sqlx::migrate!`, which tracks the files it read but not a new file
// added to a directory: rebuild when either directory changes.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
