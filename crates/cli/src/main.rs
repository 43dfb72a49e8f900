//! berth: Docker's command line, as a client of the Engine API on a unix socket.

mod args;
mod auth;
mod client;
mod commands;
mod context;
mod format;
mod http;
mod stream;
mod template;
mod term;
mod typed;
mod usage;

use std::io::Write;
use std::process::ExitCode;

use args::{Cli, Command, ContainerCommand, ImageCommand, SystemCommand};
use client::{CliError, Client};

fn main() -> ExitCode {
    // A closed stdout (`berth ps | head -1`) ends berth quietly, as it ends docker.
    // SAFETY: restoring the default disposition of one signal; no handler involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // `docker --version` / `-v`: the client's version line, no daemon asked.
    if wants_version(&std::env::args().collect::<Vec<_>>()) {
        println!(
            "berth version {}, build {}",
            env!("CARGO_PKG_VERSION"),
            option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown")
        );
        return ExitCode::SUCCESS;
    }
    // Docker's help layout (usage lines, templates) changes no parsing: it is put on
    // the command tree only when clap has something to print (help, a usage error),
    // which keeps it off every normal command's start.
    let parsed = <Cli as clap::CommandFactory>::command()
        .try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(_) => {
            let command = usage::docker_style(<Cli as clap::CommandFactory>::command());
            match command
                .try_get_matches()
                .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m))
            {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            }
        }
    };
    if let Command::Completion(a) = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(a.shell, &mut cmd, "berth", &mut script);
        let _ = std::io::stdout().write_all(&script);
        return ExitCode::SUCCESS;
    }
    let store = context::Store::new(cli.config.as_deref());
    if let Command::Context { command } = cli.command {
        return finish(commands::context::run(&store, command), false, "");
    }
    let host = match context::select_host(cli.host.as_deref(), cli.context.as_deref(), &store) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let (is_run, name) = command_name(&cli.command);
    let result = Client::new(&host).and_then(|mut client| {
        client.config_dir = store.dir.clone();
        dispatch(&mut client, cli.command)
    });
    finish(result, is_run, name)
}

fn finish(result: client::Result<()>, is_run: bool, name: &str) -> ExitCode {
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Exit(code)) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            if is_run {
                eprintln!("berth: {e}\n\nRun 'berth {name} --help' for more information");
                ExitCode::from(125)
            } else {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        }
    }
}

/// `--version`/`-v` among the global flags, before any command.
fn wants_version(args: &[String]) -> bool {
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--version" | "-v" => return true,
            "-H" | "--host" | "-c" | "--context" | "-l" | "--log-level" | "--config" => i += 2,
            a if a.starts_with('-') => i += 1,
            _ => return false,
        }
    }
    false
}

fn usage_error(e: clap::Error) -> ExitCode {
    ExitCode::from(usage::report(&e))
}

/// Whether the command reports errors as `run` does (exit 125), and its name.
fn command_name(c: &Command) -> (bool, &'static str) {
    match c {
        Command::Run(_)
        | Command::Container {
            command: ContainerCommand::Run(_),
        } => (true, "run"),
        Command::Create(_)
        | Command::Container {
            command: ContainerCommand::Create(_),
        } => (true, "create"),
        _ => (false, ""),
    }
}

fn dispatch(c: &mut Client, command: Command) -> client::Result<()> {
    use commands::{container as ct, image as im, run, system as sys};
    match command {
        Command::Run(a) => run::run(c, a),
        Command::Create(a) => run::create_cmd(c, a),
        Command::Start(a) => run::start(c, a),
        Command::Stop(a) => ct::stop(c, a, false),
        Command::Restart(a) => ct::stop(c, a, true),
        Command::Kill(a) => ct::kill(c, a),
        Command::Rm(a) => ct::rm(c, a),
        Command::Ps(a) => ct::ps(c, a),
        Command::Logs(a) => ct::logs(c, a),
        Command::Exec(a) => run::exec(c, a),
        Command::Attach(a) => run::attach(c, a),
        Command::Inspect(a) => sys::inspect(c, a, None),
        Command::Images(a) => im::images(c, a),
        Command::Pull(a) => im::pull(c, a),
        Command::Push(a) => im::push(c, a),
        Command::Tag(a) => im::tag(c, a),
        Command::Rmi(a) => im::rmi(c, a),
        Command::Import(a) => im::import(c, a),
        Command::Export(a) => ct::export(c, a),
        Command::Save(a) => im::save(c, a),
        Command::Load(a) => im::load(c, a),
        Command::History(a) => im::history(c, a),
        Command::Wait(a) => ct::wait(c, a),
        Command::Rename(a) => ct::rename(c, a),
        Command::Pause(a) => ct::simple(c, a, "pause"),
        Command::Unpause(a) => ct::simple(c, a, "unpause"),
        Command::Top(a) => ct::top(c, a),
        Command::Stats(a) => ct::stats(c, a),
        Command::Cp(a) => ct::cp(c, a),
        Command::Diff(a) => ct::diff(c, a),
        Command::Commit(a) => ct::commit(c, a),
        Command::Update(a) => ct::update(c, a),
        Command::Events(a) => sys::events(c, a),
        Command::Login(a) => sys::login(c, a),
        Command::Port(a) => commands::resources::port(c, a),
        Command::Volume { command } => commands::resources::volume(c, command),
        Command::Network { command } => commands::resources::network(c, command),
        Command::Logout(a) => sys::logout(c, a),
        Command::Info(a) => sys::info(c, a),
        Command::Version(a) => sys::version(c, a),
        Command::Container { command } => match command {
            ContainerCommand::Run(a) => run::run(c, a),
            ContainerCommand::Create(a) => run::create_cmd(c, a),
            ContainerCommand::Start(a) => run::start(c, a),
            ContainerCommand::Stop(a) => ct::stop(c, a, false),
            ContainerCommand::Restart(a) => ct::stop(c, a, true),
            ContainerCommand::Kill(a) => ct::kill(c, a),
            ContainerCommand::Rm(a) => ct::rm(c, a),
            ContainerCommand::Ls(a) => ct::ps(c, a),
            ContainerCommand::Logs(a) => ct::logs(c, a),
            ContainerCommand::Exec(a) => run::exec(c, a),
            ContainerCommand::Attach(a) => run::attach(c, a),
            ContainerCommand::Inspect(a) => sys::inspect(c, a, Some("container")),
            ContainerCommand::Export(a) => ct::export(c, a),
            ContainerCommand::Wait(a) => ct::wait(c, a),
            ContainerCommand::Rename(a) => ct::rename(c, a),
            ContainerCommand::Pause(a) => ct::simple(c, a, "pause"),
            ContainerCommand::Unpause(a) => ct::simple(c, a, "unpause"),
            ContainerCommand::Top(a) => ct::top(c, a),
            ContainerCommand::Stats(a) => ct::stats(c, a),
            ContainerCommand::Cp(a) => ct::cp(c, a),
            ContainerCommand::Diff(a) => ct::diff(c, a),
            ContainerCommand::Commit(a) => ct::commit(c, a),
            ContainerCommand::Update(a) => ct::update(c, a),
            ContainerCommand::Prune(a) => ct::prune(c, a),
            ContainerCommand::Port(a) => commands::resources::port(c, a),
        },
        Command::Image { command } => match command {
            ImageCommand::Ls(a) => im::images(c, a),
            ImageCommand::Pull(a) => im::pull(c, a),
            ImageCommand::Push(a) => im::push(c, a),
            ImageCommand::Tag(a) => im::tag(c, a),
            ImageCommand::Rm(a) => im::rmi(c, a),
            ImageCommand::Import(a) => im::import(c, a),
            ImageCommand::Save(a) => im::save(c, a),
            ImageCommand::Load(a) => im::load(c, a),
            ImageCommand::History(a) => im::history(c, a),
            ImageCommand::Inspect(a) => sys::inspect(c, a, Some("image")),
            ImageCommand::Prune(a) => im::prune(c, a),
        },
        // Contexts and completion need no daemon: main handles them before connecting.
        Command::Context { .. } | Command::Completion(_) => Ok(()),
        Command::System { command } => match command {
            SystemCommand::Df(a) => sys::df(c, a),
            SystemCommand::Prune(a) => sys::prune(c, a),
            SystemCommand::Info(a) => sys::info(c, a),
            SystemCommand::Events(a) => sys::events(c, a),
        },
    }
}
