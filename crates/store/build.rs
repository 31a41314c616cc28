// The schema is embedded by `sqlx::migrate!`, which tracks the files it read but not a new file
// added to the directory: rebuild when the directory changes.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
}
