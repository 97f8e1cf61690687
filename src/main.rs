//! The `pickleshelf` command-line tool (thin: all logic lives in the library).
fn main() {
    std::process::exit(0);
}
