//! The `nimbus` command: parses the command line and calls the library.

mod cli;

use clap::Parser;

/// mimalloc instead of the system allocator: a request allocates and frees
/// a few hundred small blocks (hyper, the gateway, wasmtime's store and
/// instance), and glibc's malloc spent about an eighth of the server's
/// instructions on them (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // Flushes the log when main returns.
    let _log = cli::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
