//! The shim's command line. berthd is its only caller, so the flags are parsed by
//! hand: a flag parser would cost more binary (and private memory) than it saves.

use std::path::PathBuf;

use crate::error::ShimError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub id: String,
    pub bundle: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_root: PathBuf,
    pub log_path: PathBuf,
    /// Rotate the log once it has reached this many bytes (Docker's `max-size`).
    pub log_max_size: Option<u64>,
    /// Files kept, counting the live one (Docker's `max-file`, default 1).
    pub log_max_file: u32,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub systemd_cgroup: bool,
    /// Attach clients to wait for before the container's program runs (`docker run`
    /// attaches before it starts: output written before they connect would be lost).
    pub attach_wait: u32,
    /// The pty's size before the program runs (`HEIGHTxWIDTH`, Docker's ConsoleSize).
    pub console_size: Option<(u16, u16)>,
}

pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, ShimError> {
    let mut id = None;
    let mut bundle = None;
    let mut state_dir = None;
    let mut runtime_root = None;
    let mut log_path = None;
    let mut log_max_size = None;
    let mut log_max_file = 1;
    let mut tty = false;
    let mut stdin = false;
    let mut stdin_once = false;
    let mut systemd_cgroup = false;
    let mut attach_wait = 0;
    let mut console_size = None;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let switch = |set: &mut bool| -> Result<(), ShimError> {
            match inline.as_deref() {
                None | Some("true") => *set = true,
                Some("false") => *set = false,
                Some(v) => return Err(usage(format!("{flag} takes no value, got {v:?}"))),
            }
            Ok(())
        };
        match flag.as_str() {
            "--tty" => switch(&mut tty)?,
            "--stdin" => switch(&mut stdin)?,
            "--stdin-once" => switch(&mut stdin_once)?,
            "--systemd-cgroup" => switch(&mut systemd_cgroup)?,
            // Read in main before the arguments are parsed.
            "--ready-stdout" => {}
            "--id" | "--bundle" | "--state-dir" | "--runtime-root" | "--log-path"
            | "--log-max-size" | "--log-max-file" | "--attach-wait" | "--console-size" => {
                let value = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .ok_or_else(|| usage(format!("{flag} needs a value")))?,
                };
                match flag.as_str() {
                    "--id" => id = Some(value),
                    "--bundle" => bundle = Some(PathBuf::from(value)),
                    "--state-dir" => state_dir = Some(PathBuf::from(value)),
                    "--runtime-root" => runtime_root = Some(PathBuf::from(value)),
                    "--log-path" => log_path = Some(PathBuf::from(value)),
                    "--log-max-size" => {
                        let n: i64 = value.parse().map_err(|_| {
                            usage(format!("--log-max-size: not a number: {value:?}"))
                        })?;
                        // Docker's -1 means unlimited.
                        log_max_size = u64::try_from(n).ok().filter(|n| *n > 0);
                    }
                    "--console-size" => {
                        let parsed = value
                            .split_once('x')
                            .and_then(|(h, w)| Some((h.parse().ok()?, w.parse().ok()?)));
                        console_size = Some(parsed.ok_or_else(|| {
                            usage(format!("--console-size: not HEIGHTxWIDTH: {value:?}"))
                        })?);
                    }
                    "--attach-wait" => {
                        attach_wait = value.parse().map_err(|_| {
                            usage(format!("--attach-wait: not a number: {value:?}"))
                        })?;
                    }
                    _ => {
                        log_max_file = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                            usage(format!("--log-max-file: not a positive number: {value:?}"))
                        })?;
                    }
                }
            }
            other => return Err(usage(format!("unknown argument {other:?}"))),
        }
    }
    let need =
        |v: Option<PathBuf>, name: &str| v.ok_or_else(|| usage(format!("--{name} is required")));
    Ok(Options {
        id: id.ok_or_else(|| usage("--id is required".into()))?,
        bundle: absolute(need(bundle, "bundle")?)?,
        state_dir: absolute(need(state_dir, "state-dir")?)?,
        runtime_root: absolute(need(runtime_root, "runtime-root")?)?,
        log_path: absolute(need(log_path, "log-path")?)?,
        log_max_size,
        log_max_file,
        tty,
        stdin,
        stdin_once,
        systemd_cgroup,
        attach_wait,
        console_size,
    })
}

/// The shim works from inside its state directory (short socket paths), so every
/// path it is given is made absolute first.
fn absolute(path: PathBuf) -> Result<PathBuf, ShimError> {
    std::path::absolute(&path).map_err(|e| ShimError::io(format!("resolve {}", path.display()), e))
}

fn usage(message: String) -> ShimError {
    ShimError::Usage(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn full_command_line() {
        let o = parse(args(&[
            "--id",
            "c1",
            "--bundle",
            "/b",
            "--state-dir=/s",
            "--runtime-root",
            "/r",
            "--log-path",
            "/l/c1-json.log",
            "--log-max-size",
            "1024",
            "--log-max-file=3",
            "--tty",
            "--stdin",
            "--stdin-once",
            "--systemd-cgroup",
        ]))
        .unwrap();
        assert_eq!(o.id, "c1");
        assert_eq!(o.state_dir, PathBuf::from("/s"));
        assert_eq!(o.log_max_size, Some(1024));
        assert_eq!(o.log_max_file, 3);
        assert!(o.tty && o.stdin && o.stdin_once && o.systemd_cgroup);
    }

    #[test]
    fn defaults_and_errors() {
        let base = [
            "--id",
            "c",
            "--bundle",
            "/b",
            "--state-dir",
            "/s",
            "--runtime-root",
            "/r",
            "--log-path",
            "/l",
        ];
        let o = parse(args(&base)).unwrap();
        assert_eq!((o.log_max_size, o.log_max_file, o.tty), (None, 1, false));
        let mut unlimited = base.to_vec();
        unlimited.extend(["--log-max-size", "-1"]);
        assert_eq!(parse(args(&unlimited)).unwrap().log_max_size, None);
        assert!(parse(args(&base[..8])).is_err());
        let mut bad = base.to_vec();
        bad.push("--nope");
        assert!(parse(args(&bad)).is_err());
        let mut bad = base.to_vec();
        bad.extend(["--log-max-file", "0"]);
        assert!(parse(args(&bad)).is_err());
        let mut bad = base.to_vec();
        bad.push("--log-max-size");
        assert!(parse(args(&bad)).is_err());
    }
}
