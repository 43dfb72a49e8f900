//! berthd: load the configuration, take the pidfile, serve the Engine API.

use std::process::ExitCode;

use berth_daemon::config::{self, Flags};
use berth_daemon::daemon;
use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let matches = Flags::command().get_matches();
    let file_given =
        matches.value_source("config_file") == Some(clap::parser::ValueSource::CommandLine);
    let flags = match Flags::from_arg_matches(&matches) {
        Ok(f) => f,
        Err(e) => e.exit(),
    };
    let cfg = match config::load(&flags, file_given) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berthd: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let reload = move || config::load(&flags, file_given).map_err(|e| e.to_string());
    let result = runtime.block_on(daemon::run(cfg, reload));
    // Blocking tasks (waits, log follows, attach copies) hold nothing that must be
    // flushed: every acknowledged change is already on disk. Do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthd: {e}");
            ExitCode::from(1)
        }
    }
}
