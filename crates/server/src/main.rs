//! `shoal-server`: Shoal's SQL server, speaking Pinot's broker API (see `shoal_server::cli`).

/// mimalloc rather than the system's allocator: planning a short query is mostly small
/// allocations (BENCHMARKS.md, "The query set's fixed cost").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shoal_server::cli::main()
}
