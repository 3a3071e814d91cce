//! Shoal's SQL server: opens the engine over Pinot table configs and schemas, consumes their
//! Kinesis streams and answers Pinot's broker API.
//!
//! ```text
//! cargo run --release --example serve -- --table-config T.json --schema S.json \
//!     [--data-dir DIR] [--listen 127.0.0.1:8099] [--validate]
//! ```
//!
//! `--table-config` and `--schema` may be repeated, once per table, in pairs. With `--validate`
//! it checks the files, prints each normalised table config as JSON (secrets as `***`) and
//! exits 0, or prints every problem and exits 2.

use clap::Parser;
use shoal::TableDefinition;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "serve", about = "Shoal's SQL server, speaking Pinot's broker API")]
struct Args {
    /// A Pinot table config JSON file (repeat for several tables, each with its --schema).
    #[arg(long = "table-config", value_name = "T.json", required = true)]
    table_configs: Vec<PathBuf>,
    /// The Pinot schema JSON file of the table config in the same position.
    #[arg(long = "schema", value_name = "S.json", required = true)]
    schemas: Vec<PathBuf>,
    /// Where tables keep their segments and manifests.
    #[arg(long, value_name = "DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Address to serve HTTP on (loopback unless told otherwise).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8099")]
    listen: String,
    /// Check the files, print the normalised table configs and exit.
    #[arg(long)]
    validate: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.table_configs.len() != args.schemas.len() {
        eprintln!(
            "error: {} --table-config and {} --schema given: give one schema per table config, in the same order",
            args.table_configs.len(),
            args.schemas.len()
        );
        return ExitCode::from(2);
    }
    let mut definitions = Vec::new();
    let mut failed = false;
    for (table_path, schema_path) in args.table_configs.iter().zip(&args.schemas) {
        match load(table_path, schema_path) {
            Ok(def) => {
                for w in &def.warnings {
                    eprintln!("warning: {}: {w}", table_path.display());
                }
                definitions.push(def);
            }
            Err(message) => {
                eprintln!("{message}");
                failed = true;
            }
        }
    }
    if failed {
        return ExitCode::from(2);
    }
    if args.validate {
        let configs: Vec<_> = definitions.iter().map(|d| d.config.normalised_json()).collect();
        let out = if configs.len() == 1 { configs[0].clone() } else { serde_json::Value::Array(configs) };
        match serde_json::to_string_pretty(&out) {
            Ok(text) => {
                // A closed pipe (`serve --validate | head`) is not an error worth a panic.
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }
            Err(e) => {
                eprintln!("error: cannot print the config: {e}");
                return ExitCode::from(2);
            }
        }
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "serve: the configs are valid, but serving is not built yet (data dir {}, listen {}); use --validate",
        args.data_dir.display(),
        args.listen
    );
    ExitCode::from(2)
}

/// Reads and validates one table config and its schema; the error lists every problem.
fn load(table_path: &PathBuf, schema_path: &PathBuf) -> Result<TableDefinition, String> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|e| format!("error: cannot read {}: {e}", p.display()))
    };
    let (table, schema) = match (read(table_path), read(schema_path)) {
        (Ok(t), Ok(s)) => (t, s),
        (t, s) => return Err([t.err(), s.err()].into_iter().flatten().collect::<Vec<_>>().join("\n")),
    };
    TableDefinition::from_json_str(&table, &schema).map_err(|err| {
        let mut lines = vec![format!(
            "error: {} with {} is not valid: {} problem(s)",
            table_path.display(),
            schema_path.display(),
            err.table.len() + err.schema.len()
        )];
        lines.extend(err.table.iter().map(|p| format!("  {}: {p}", table_path.display())));
        lines.extend(err.schema.iter().map(|p| format!("  {}: {p}", schema_path.display())));
        lines.join("\n")
    })
}
