//! The `modelsguard` command line.
fn main() {}
