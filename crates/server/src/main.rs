//! `shoal-server`: Shoal's SQL server, speaking Pinot's broker API (see `shoal_server::cli`).

fn main() -> std::process::ExitCode {
    shoal_server::cli::main()
}
