//! Bad command lines reported as Docker reports them: the message, the command's
//! usage line, and where to look for help; exit 125 for a bad flag, 1 for a wrong
//! number of arguments.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// How many arguments a command takes, as Docker's validators say it.
#[derive(Clone, Copy)]
enum Arity {
    None,
    Min(usize),
    Exact(usize),
    Max(usize),
    Range(usize, usize),
    Any,
}

fn table(path: &str) -> (&'static str, Arity) {
    use Arity::*;
    let last = path.rsplit(' ').next().unwrap_or(path);
    let path = match path {
        "container ps" | "container list" => "container ls",
        "image list" => "image ls",
        "image remove" | "image rmi" => "image rm",
        "container remove" => "container rm",
        p => p,
    };
    match path {
        "container ls" | "ps" => ("[OPTIONS]", None),
        "image ls" | "images" => ("[OPTIONS] [REPOSITORY[:TAG]]", Max(1)),
        "image rm" | "rmi" => ("[OPTIONS] IMAGE [IMAGE...]", Min(1)),
        "volume ls" | "network ls" => ("[OPTIONS]", None),
        "volume create" => ("[OPTIONS] [VOLUME]", Max(1)),
        "volume rm" => ("[OPTIONS] VOLUME [VOLUME...]", Min(1)),
        "volume inspect" => ("[OPTIONS] VOLUME [VOLUME...]", Min(1)),
        "network create" => ("[OPTIONS] NETWORK", Exact(1)),
        "network rm" => ("NETWORK [NETWORK...]", Min(1)),
        "network inspect" => ("[OPTIONS] NETWORK [NETWORK...]", Min(1)),
        _ => match last {
            "run" | "create" => ("[OPTIONS] IMAGE [COMMAND] [ARG...]", Min(1)),
            "start" | "stop" | "restart" | "kill" | "rm" | "update" => {
                ("[OPTIONS] CONTAINER [CONTAINER...]", Min(1))
            }
            "logs" | "attach" | "export" => ("[OPTIONS] CONTAINER", Exact(1)),
            "exec" => ("[OPTIONS] CONTAINER COMMAND [ARG...]", Min(2)),
            "inspect" => ("[OPTIONS] NAME|ID [NAME|ID...]", Min(1)),
            "pull" => ("[OPTIONS] NAME[:TAG|@DIGEST]", Exact(1)),
            "push" => ("[OPTIONS] NAME[:TAG]", Exact(1)),
            "tag" => ("SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", Exact(2)),
            "import" => ("[OPTIONS] file|URL|- [REPOSITORY[:TAG]]", Range(1, 2)),
            "save" => ("[OPTIONS] IMAGE [IMAGE...]", Min(1)),
            "history" => ("[OPTIONS] IMAGE", Exact(1)),
            "wait" | "pause" | "unpause" => ("CONTAINER [CONTAINER...]", Min(1)),
            "rename" => ("CONTAINER NEW_NAME", Exact(2)),
            "top" => ("CONTAINER [ps OPTIONS]", Min(1)),
            "stats" => ("[OPTIONS] [CONTAINER...]", Any),
            "cp" => ("[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-", Exact(2)),
            "diff" => ("CONTAINER", Exact(1)),
            "commit" => ("[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", Range(1, 2)),
            "load" | "events" | "info" | "version" | "prune" | "df" => ("[OPTIONS]", None),
            "login" => ("[OPTIONS] [SERVER]", Max(1)),
            "port" => ("CONTAINER [PRIVATE_PORT[/PROTO]]", Range(1, 2)),
            "connect" => ("[OPTIONS] NETWORK CONTAINER", Exact(2)),
            "disconnect" => ("[OPTIONS] NETWORK CONTAINER", Exact(2)),
            "completion" => ("[bash|zsh|fish|powershell]", Exact(1)),
            "logout" => ("[SERVER]", Max(1)),
            _ => ("[OPTIONS]", Any),
        },
    }
}

/// Help laid out as Docker's: `Usage:  berth ps [OPTIONS]`, the description, then
/// the options (or the subcommands of a management command).
pub fn docker_style(cmd: clap::Command) -> clap::Command {
    let abouts: std::collections::HashMap<String, String> = cmd
        .get_subcommands()
        .filter_map(|s| Some((s.get_name().to_string(), s.get_about()?.to_string())))
        .collect();
    style(cmd, "", &abouts)
}

fn style(
    cmd: clap::Command,
    parent: &str,
    abouts: &std::collections::HashMap<String, String>,
) -> clap::Command {
    let name = cmd.get_name().to_string();
    let path = if parent.is_empty() {
        String::new()
    } else if parent == "berth" {
        name.clone()
    } else {
        format!("{parent} {name}")
    };
    let has_subcommands = cmd.get_subcommands().next().is_some();
    let me = if path.is_empty() {
        "berth".to_string()
    } else {
        path.clone()
    };
    let mut cmd = cmd.mut_subcommands(|sub| style(sub, &me, abouts));
    if cmd.get_about().is_none() {
        // `container ls` is `ps`, `image ls` is `images`, `image rm` is `rmi`.
        let short = match (parent, name.as_str()) {
            ("container", "ls") => "ps",
            ("image", "ls") => "images",
            ("image", "rm") => "rmi",
            (_, n) => n,
        };
        if let Some(about) = abouts.get(short) {
            cmd = cmd.about(about.clone());
        }
    }
    if has_subcommands {
        let usage = if path.is_empty() {
            "berth [OPTIONS] COMMAND".to_string()
        } else {
            format!("berth {path} COMMAND")
        };
        let more = if path.is_empty() {
            "berth".to_string()
        } else {
            format!("berth {path}")
        };
        cmd = cmd.override_usage(usage).help_template(format!(
            "Usage:  {{usage}}\n\n{{about}}\n\nCommands:\n{{subcommands}}\n\nOptions:\n{{options}}\n\nRun '{more} COMMAND --help' for more information on a command.\n"
        ));
    } else if !path.is_empty() {
        let (usage, _) = table(&path);
        cmd = cmd
            .override_usage(format!("berth {path} {usage}"))
            .help_template("Usage:  {usage}\n\n{about}\n\nOptions:\n{options}\n");
    }
    cmd
}

/// The command path from the raw arguments: `ps`, `container ls`, `image rm`.
fn command_path(args: &[String]) -> String {
    let mut words = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-H" | "--host" | "-c" | "--context" | "-l" | "--log-level" | "--config" => i += 2,
            _ if a.starts_with('-') => i += 1,
            _ => {
                words.push(a.to_string());
                if !matches!(
                    a,
                    "container" | "image" | "system" | "volume" | "network" | "context"
                ) || words.len() == 2
                {
                    break;
                }
                i += 1;
            }
        }
    }
    words.join(" ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "argument"
    } else {
        "arguments"
    }
}

/// Prints a clap error the way Docker prints the same mistake; the exit code.
pub fn report(e: &clap::Error) -> u8 {
    let args: Vec<String> = std::env::args().collect();
    let path = command_path(&args);
    let (usage, arity) = table(&path);
    let usage_line = format!("Usage:  berth {path} {usage}");
    let invalid = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.first().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::UnknownArgument if invalid.starts_with('-') => {
            let msg = if let Some(long) = invalid.strip_prefix("--") {
                format!("unknown flag: --{}", long.split('=').next().unwrap_or(long))
            } else {
                let letter = invalid.trim_start_matches('-');
                let given = args
                    .iter()
                    .find(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(letter))
                    .cloned()
                    .unwrap_or_else(|| invalid.clone());
                format!("unknown shorthand flag: '{letter}' in {given}")
            };
            eprintln!("{msg}\n\n{usage_line}\n\nRun 'berth {path} --help' for more information");
            125
        }
        ErrorKind::UnknownArgument
        | ErrorKind::MissingRequiredArgument
        | ErrorKind::TooManyValues => {
            let (what, see) = match arity {
                Arity::None => ("accepts no arguments".to_string(), "Run"),
                Arity::Min(n) => (format!("requires at least {n} {}", plural(n)), "See"),
                Arity::Exact(n) => (format!("requires {n} {}", plural(n)), "Run"),
                Arity::Max(n) => (format!("requires at most {n} {}", plural(n)), "See"),
                Arity::Range(a, b) => (
                    format!("requires at least {a} and at most {b} {}", plural(b)),
                    "See",
                ),
                Arity::Any => ("was given a bad argument".to_string(), "Run"),
            };
            eprintln!(
                "berth: 'berth {path}' {what}\n\n{usage_line}\n\n{see} 'berth {path} --help' for more information"
            );
            1
        }
        ErrorKind::InvalidSubcommand => {
            match path.split_once(' ') {
                Some((group, _)) => eprintln!(
                    "berth: unknown command: berth {path}\n\nUsage:  berth {group}\n\nRun 'berth {group} --help' for more information"
                ),
                None => eprintln!(
                    "berth: unknown command: berth {path}\n\nRun 'berth --help' for more information"
                ),
            }
            1
        }
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            0
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let value = match e.get(ContextKind::InvalidValue) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            let flag = invalid.split_whitespace().next().unwrap_or("").to_string();
            eprintln!(
                "invalid argument \"{value}\" for \"{flag}\" flag: invalid value\n\n{usage_line}\n\nRun 'berth {path} --help' for more information"
            );
            125
        }
        _ => {
            let _ = e.print();
            125
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(command_path(&v("berth -H x ps -a")), "ps");
        assert_eq!(
            command_path(&v("berth container ls --bogus")),
            "container ls"
        );
        assert_eq!(command_path(&v("berth run -it busybox")), "run");
    }
}
