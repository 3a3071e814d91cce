//! Shoal's SQL server, as `cargo run --example serve -- ...`: the same command line as the
//! `shoal-server` binary (`crates/server`), which `cargo install --path crates/server` installs.

fn main() -> std::process::ExitCode {
    shoal_server::cli::main()
}
