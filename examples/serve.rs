//! Shoal's SQL server, as `cargo run --example serve -- ...`: the same command line as the
//! `shoal-server` binary (`crates/server`), which `cargo install --path crates/server` installs.

/// mimalloc rather than the system's allocator: planning a short query is mostly small
/// allocations (BENCHMARKS.md, "The query set's fixed cost").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shoal_server::cli::main()
}
