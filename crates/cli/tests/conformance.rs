//! berth against the real `docker` CLI (28.x), both talking to the same berthd:
//! stdout, stderr and exit codes must match after masking IDs (and, where a line
//! shows a time that can tick between the two runs, durations).

mod common;

use common::{code, mask, mask_ids, stderr, stdout, Engine, Kind};

/// Each check runs twice: against berthd, and against Debian's dockerd (20.10, API
/// 1.41), since berth is a client of the Engine API and not of berthd alone. A command
/// line left out against dockerd says why next to it.
macro_rules! against_both_daemons {
    ($($name:ident),* $(,)?) => {
        mod against_berthd {
            $(#[test]
            fn $name() {
                super::$name(&super::Engine::of(super::Kind::Berthd));
            })*
        }
        mod against_dockerd {
            $(#[test]
            fn $name() {
                super::$name(&super::Engine::of(super::Kind::Dockerd));
            })*
        }
    };
}

against_both_daemons!(
    ps_images_inspect_logs_match_docker,
    run_exit_codes_and_output_match_docker,
    create_flags_reach_the_daemon_as_dockers_do,
    prune_commands_match_docker,
    lifecycle_commands_match_docker,
    version_server_part_matches_docker,
    events_save_and_load_match_docker,
    volumes_networks_info_and_disk_usage_match_docker,
);

/// Runs one command line through both CLIs; retries a few times when the only
/// difference could be a clock tick between the two runs.
fn same(e: &Engine, args: &[&str]) {
    let mut last = String::new();
    for _ in 0..5 {
        let b = e.berth(args);
        let d = e.docker(args);
        let (bo, doo) = (mask_ids(&stdout(&b)), mask_ids(&stdout(&d)));
        let (be, de) = (berth_as_docker(&stderr(&b)), mask_ids(&stderr(&d)));
        if bo == doo && be == de && code(&b) == code(&d) {
            return;
        }
        last = format!(
            "{args:?}\n--- berth (exit {}) ---\n{bo}{be}\n--- docker (exit {}) ---\n{doo}{de}",
            code(&b),
            code(&d)
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    panic!("outputs differ: {last}");
}

/// Compares with durations masked (for outputs with times that move, e.g. `ps`
/// right after `run`), but still exact otherwise.
fn same_masked(e: &Engine, args: &[&str]) {
    let b = e.berth(args);
    let d = e.docker(args);
    assert_eq!(code(&b), code(&d), "{args:?} exit codes");
    assert_eq!(mask(&stdout(&b)), mask(&stdout(&d)), "{args:?} stdout");
    assert_eq!(
        mask(&berth_as_docker(&stderr(&b))),
        mask(&stderr(&d)),
        "{args:?} stderr"
    );
}

/// berth names itself where docker does: `berth:` / `'berth run --help'`.
fn berth_as_docker(s: &str) -> String {
    mask_ids(&s.replace("berth ", "docker ").replace("berth:", "docker:"))
}

fn ps_images_inspect_logs_match_docker(e: &Engine) {
    e.ok(&["run", "--name", "hello", "busybox", "echo", "hello world"]);
    let failing = e.berth(&[
        "run",
        "--name",
        "failing",
        "-l",
        "team=a",
        "busybox",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 3",
    ]);
    assert_eq!(code(&failing), 3);
    e.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "300"]);
    e.ok(&["create", "--name", "fresh", "-e", "A=1", "busybox", "true"]);
    e.ok(&["tag", "busybox", "example.com/team/tool:1.0"]);

    for args in [
        &["ps"][..],
        &["ps", "-a"],
        &["ps", "-a", "--no-trunc"],
        &["ps", "-aq"],
        &["ps", "-a", "-n", "2"],
        &["ps", "-l"],
        &["ps", "-a", "--filter", "status=exited"],
        &["ps", "-a", "--filter", "name=sleeper"],
        &[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Status}} {{.Command}}",
        ],
        &[
            "ps",
            "-a",
            "--format",
            "table {{.ID}}\\t{{.Names}}\\t{{.Labels}}",
        ],
        &["ps", "-a", "--format", "{{json .}}"],
        &[
            "ps",
            "-a",
            "--format",
            "{{upper .Names}} {{.Names | printf \"%-10s|\"}}",
        ],
        &["container", "ls", "-a"],
        &["images"],
        &["images", "-q"],
        &["images", "--no-trunc"],
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"],
        &["images", "--format", "{{json .}}"],
        &["image", "ls"],
        &["history", "busybox"],
        &["logs", "hello"],
        &["logs", "failing"],
        &["logs", "--tail", "1", "failing"],
        &["logs", "-t", "hello"],
        &[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            "failing",
        ],
        &["inspect", "--format", "{{.State.Pid}}", "hello"],
        &["inspect", "--format", "{{.GraphDriver.Data}}", "sleeper"],
        &[
            "inspect",
            "--format",
            "{{json .Config.Cmd}} {{.Config.Env}} {{index .Config.Labels \"team\"}}",
            "failing",
        ],
        &[
            "inspect",
            "--format",
            "{{range .Config.Env}}[{{.}}]{{end}}",
            "fresh",
        ],
        &[
            "inspect",
            "--format",
            "{{if .State.Running}}up{{else}}down{{end}}",
            "sleeper",
        ],
        &[
            "inspect",
            "-f",
            "{{.Name}} {{.HostConfig.RestartPolicy.Name}}",
            "hello",
            "failing",
        ],
        &[
            "inspect",
            "--type",
            "image",
            "--format",
            "{{.Id}} {{.RepoTags}}",
            "busybox",
        ],
        &["inspect", "busybox"],
        &["inspect", "hello"],
        &["inspect", "no-such-thing"],
        &["inspect", "--type", "container", "no-such-thing"],
        &["container", "inspect", "--format", "{{.Id}}", "hello"],
        &[
            "image",
            "inspect",
            "--format",
            "{{.RootFS.Layers}}",
            "busybox",
        ],
        &["wait", "failing"],
        &["top", "sleeper"],
        &["diff", "hello"],
        &["system", "df"],
        &["rm", "no-such-container"],
        &["stop", "no-such-container"],
        &["logs", "no-such-container"],
        &["rmi", "no-such-image"],
        &["ps", "-s"],
        &["ps", "-a", "--format", "{{.Label \"team\"}}|{{.Names}}"],
        &["history", "-H=false", "busybox"],
        &["history", "-q", "busybox"],
        &["start", "no-such-container", "another-one"],
        &["exec", "sleeper", "sh", "-c", "echo $PATH; exit 4"],
        &[
            "exec",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "sleeper",
            "sh",
            "-c",
            "id -u; pwd",
        ],
        &["exec", "sleeper", "no-such-command"],
        &["exec", "no-such-container", "true"],
        &["top", "sleeper", "-o", "pid,comm"],
        &["stats", "--no-stream"],
        &["logs", "--since", "1h", "failing"],
        // Go's typed structs: struct printing, zero values, field order in json.
        &["inspect", "-f", "{{.State}}", "sleeper"],
        &["inspect", "-f", "{{json .State}}", "sleeper"],
        &[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy}} {{.HostConfig.LogConfig}}",
            "sleeper",
        ],
        &[
            "inspect",
            "-f",
            "{{.SizeRw}} {{.State.Health}} {{.Config.Entrypoint}} {{.HostConfig.Binds}}",
            "sleeper",
        ],
        &["inspect", "-f", "{{.Mounts}} {{.GraphDriver}}", "sleeper"],
        &[
            "inspect",
            "-f",
            "{{json .HostConfig.RestartPolicy}}",
            "sleeper",
        ],
        &[
            "image",
            "inspect",
            "-f",
            "{{.RootFS}} {{.Metadata}} {{json .Metadata}}",
            "busybox",
        ],
        &[
            "image",
            "inspect",
            "-f",
            "{{.Config.Cmd}} {{.RepoDigests}}",
            "busybox",
        ],
    ] {
        same(e, args);
    }
}

fn run_exit_codes_and_output_match_docker(e: &Engine) {
    for args in [
        &["run", "--rm", "busybox", "echo", "hi"][..],
        &["run", "--rm", "busybox", "sh", "-c", "exit 42"],
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ],
        &[
            "run",
            "--rm",
            "-e",
            "A=b c",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "busybox",
            "sh",
            "-c",
            "echo \"$A\"; pwd; id -u",
        ],
        &[
            "run",
            "--rm",
            "--entrypoint",
            "echo",
            "busybox",
            "entry",
            "point",
        ],
        &["run", "--rm", "-h", "myhost", "busybox", "hostname"],
        &["run", "--rm", "busybox", "no-such-command"],
        &["run", "--rm", "busybox", "/etc/passwd"],
        &["run", "--rm", "no-such-image-here"],
        &["run", "--rm", "--bogus-flag", "busybox"],
        &["container", "run", "--rm", "busybox", "true"],
        &[
            "run",
            "--rm",
            "--env-file",
            "ENVFILE",
            "-e",
            "C=3",
            "busybox",
            "sh",
            "-c",
            "echo $A $B $C",
        ],
    ] {
        let envfile = e.dir.join("env.list");
        std::fs::write(&envfile, "# comment\nA=1\n\nB=two words\n").expect("env file");
        let envfile = envfile.to_string_lossy().to_string();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "ENVFILE" { envfile.as_str() } else { a })
            .collect();
        let args = &args[..];
        same(e, args);
    }
}

/// The same flags through both CLIs must give the daemon the same container: the
/// create bodies berth builds are compared through what berthd stored.
fn create_flags_reach_the_daemon_as_dockers_do(e: &Engine) {
    let flag_sets: &[&[&str]] = &[
        &[
            "-e",
            "A=1",
            "-l",
            "x=y",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "--hostname",
            "h1",
        ],
        &[
            "--restart",
            "on-failure:2",
            "--init",
            "-m",
            "64m",
            "--memory-swap",
            "128m",
        ],
        &[
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
            "--cpuset-cpus",
            "0",
            "--blkio-weight",
            "300",
        ],
        &[
            "--pids-limit",
            "50",
            "--cap-add",
            "net_admin",
            "--cap-drop",
            "MKNOD",
            "--read-only",
        ],
        &[
            "--security-opt",
            "no-new-privileges",
            "--tmpfs",
            "/run:size=1m",
            "-v",
            "/tmp:/h:ro",
        ],
        &[
            "--ulimit",
            "nofile=100:200",
            "--stop-signal",
            "SIGINT",
            "--stop-timeout",
            "5",
        ],
        &[
            "-p",
            "8080:80",
            "--expose",
            "90",
            "--dns",
            "1.1.1.1",
            "--add-host",
            "a:1.2.3.4",
        ],
        &["--entrypoint", "sh", "-v", "/anon", "--privileged", "-it"],
        &[
            "--pid",
            "host",
            "--ipc",
            "private",
            "--uts",
            "host",
            "--shm-size",
            "128m",
        ],
        &[
            "--group-add",
            "10",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--oom-score-adj",
            "-5",
        ],
        &[
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=10m",
            "--oom-kill-disable",
        ],
        &[
            "--health-cmd",
            "true",
            "--health-interval",
            "5s",
            "--health-retries",
            "2",
        ],
        &[
            "--memory-reservation",
            "32m",
            "--cpu-period",
            "100000",
            "--cpu-quota",
            "50000",
        ],
        &[
            "--dns-search",
            "example.com",
            "--dns-option",
            "ndots:2",
            "--domainname",
            "d.example",
        ],
        &[
            "--device",
            "/dev/null:/dev/mynull:rw",
            "--cgroupns",
            "private",
            "--no-healthcheck",
        ],
    ];
    // Fields only one side sends as a zero value; they change nothing.
    let ignored = [
        "Hostname",
        "CpuCount",
        "CpuPercent",
        "IOMaximumBandwidth",
        "IOMaximumIOps",
        "DeviceRequests",
        "KernelMemory",
        "Runtime",
        "StorageOpt",
        "Sysctls",
        "ArgsEscaped",
        "MacAddress",
        "NetworkDisabled",
        "Shell",
        "ConsoleSize",
    ];
    let normalized = |text: &str| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(text).expect("inspect json");
        if let Some(m) = v.as_object_mut() {
            for k in ignored {
                m.remove(k);
            }
        }
        v
    };
    // Every difference of every flag set, reported together.
    let mut differences = Vec::new();
    for flags in flag_sets {
        let mut args = vec!["create"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "-c", "true"]);
        let b = e.berth_stdin(&args, b"");
        assert_eq!(code(&b), 0, "{flags:?}: {}", stderr(&b));
        let d = e.docker(&args);
        assert_eq!(code(&d), 0, "{flags:?}: {}", stderr(&d));
        let (bid, did) = (stdout(&b).trim().to_string(), stdout(&d).trim().to_string());
        for part in ["HostConfig", "Config"] {
            let f = format!("{{{{json .{part}}}}}");
            let bv = normalized(&e.ok(&["inspect", "-f", &f, &bid]));
            let dv = normalized(&e.ok(&["inspect", "-f", &f, &did]));
            let (Some(bm), Some(dm)) = (bv.as_object(), dv.as_object()) else {
                panic!("{flags:?} {part}: not objects: {bv} / {dv}");
            };
            let mut keys: Vec<&String> = bm.keys().chain(dm.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if bm.get(k) != dm.get(k) {
                    differences.push(format!(
                        "{flags:?} {part}.{k}: berth {:?}, docker {:?}",
                        bm.get(k),
                        dm.get(k)
                    ));
                }
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

fn prune_commands_match_docker(e: &Engine) {
    for args in [
        &["container", "prune", "-f"][..],
        &["image", "prune", "-f"],
        &["system", "prune", "-f"],
    ] {
        // The same starting point for each CLI: two stopped containers.
        e.ok(&["container", "prune", "-f"]);
        e.ok(&["create", "busybox", "true"]);
        e.ok(&["create", "busybox", "true"]);
        let b = e.berth(args);
        e.ok(&["container", "prune", "-f"]);
        e.ok(&["create", "busybox", "true"]);
        e.ok(&["create", "busybox", "true"]);
        let d = e.docker(args);
        assert_eq!(code(&b), code(&d), "{args:?}: {}", stderr(&b));
        // Different containers went: compare with IDs masked.
        let sorted = |s: String| {
            let mut l: Vec<String> = mask_ids(&s).lines().map(String::from).collect();
            l.sort();
            l
        };
        assert_eq!(sorted(stdout(&b)), sorted(stdout(&d)), "{args:?}");
        assert_eq!(
            berth_as_docker(&stderr(&b)),
            mask_ids(&stderr(&d)),
            "{args:?}"
        );
    }
}

fn lifecycle_commands_match_docker(e: &Engine) {
    // Each command runs through berth on one container and docker on a twin.
    e.ok(&["run", "-d", "--name", "b1", "busybox", "sleep", "300"]);
    e.ok(&["run", "-d", "--name", "d1", "busybox", "sleep", "300"]);
    let pairs: &[(&[&str], &[&str])] = &[
        (&["pause", "b1"], &["pause", "d1"]),
        (&["unpause", "b1"], &["unpause", "d1"]),
        (&["restart", "-t", "1", "b1"], &["restart", "-t", "1", "d1"]),
        (&["kill", "-s", "KILL", "b1"], &["kill", "-s", "KILL", "d1"]),
        (&["wait", "b1"], &["wait", "d1"]),
        (&["kill", "b1"], &["kill", "d1"]),
        (&["start", "b1"], &["start", "d1"]),
        (&["stop", "-t", "1", "b1"], &["stop", "-t", "1", "d1"]),
        (&["rename", "b1", "b2"], &["rename", "d1", "d2"]),
        (&["rm", "b2"], &["rm", "d2"]),
    ];
    for (b_args, d_args) in pairs {
        let b = e.berth(b_args);
        let d = e.docker(d_args);
        let b_out = stdout(&b).replace("b1", "X").replace("b2", "Y");
        let d_out = stdout(&d).replace("d1", "X").replace("d2", "Y");
        assert_eq!(
            code(&b),
            code(&d),
            "{b_args:?}: {} / {}",
            stderr(&b),
            stderr(&d)
        );
        assert_eq!(b_out, d_out, "{b_args:?}");
        assert_eq!(
            mask_ids(&stderr(&b)).replace("b1", "X").replace("b2", "Y"),
            mask_ids(&stderr(&d)).replace("d1", "X").replace("d2", "Y"),
            "{b_args:?}"
        );
    }
    same_masked(e, &["ps", "-a"]);
}

fn version_server_part_matches_docker(e: &Engine) {
    let server = |s: String| -> String {
        s.lines()
            .skip_while(|l| !l.starts_with("Server"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let b = server(e.ok(&["version"]));
    let d = server(stdout(&e.docker(&["version"])));
    assert!(b.starts_with("Server"), "{b}");
    assert_eq!(b, d);
    same(
        e,
        &[
            "version",
            "--format",
            "{{.Server.Version}} {{.Server.APIVersion}}",
        ],
    );
    same(
        e,
        &[
            "info",
            "--format",
            "{{.Containers}} {{.Images}} {{.Driver}}",
        ],
    );
}

fn events_save_and_load_match_docker(e: &Engine) {
    e.ok(&["tag", "busybox", "again:1"]);
    e.ok(&["run", "--rm", "--name", "ev", "busybox", "true"]);
    e.ok(&["rmi", "again:1"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    for args in [
        &["events", "--since", "0", "--until", now.as_str()][..],
        &[
            "events",
            "--since",
            "0",
            "--until",
            now.as_str(),
            "--filter",
            "type=image",
        ],
        &[
            "events",
            "--since",
            "0",
            "--until",
            now.as_str(),
            "--format",
            "{{.Type}} {{.Action}}",
        ],
        &[
            "events",
            "--since",
            "0",
            "--until",
            now.as_str(),
            "--format",
            "{{json .}}",
        ],
    ] {
        same(e, args);
    }
    let b_tar = e.dir.join("b.tar");
    let d_tar = e.dir.join("d.tar");
    let b = e.berth(&["save", "-o", b_tar.to_str().expect("utf-8"), "busybox"]);
    let d = e.docker(&["save", "-o", d_tar.to_str().expect("utf-8"), "busybox"]);
    assert_eq!(
        (code(&b), stdout(&b)),
        (code(&d), stdout(&d)),
        "{}",
        stderr(&b)
    );
    let list = |p: &std::path::Path| {
        let o = std::process::Command::new("tar")
            .arg("-tf")
            .arg(p)
            .output()
            .expect("tar -t");
        stdout(&o)
    };
    assert_eq!(list(&b_tar), list(&d_tar));
    e.ok(&["rmi", "busybox"]);
    let b = e.berth(&["load", "-i", b_tar.to_str().expect("utf-8")]);
    e.ok(&["rmi", "busybox"]);
    let d = e.docker(&["load", "-i", d_tar.to_str().expect("utf-8")]);
    assert_eq!(
        (code(&b), stdout(&b), berth_as_docker(&stderr(&b))),
        (code(&d), stdout(&d), stderr(&d))
    );
    assert!(stdout(&b).contains("busybox:latest"), "{}", stdout(&b));
}

fn volumes_networks_info_and_disk_usage_match_docker(e: &Engine) {
    e.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "300"]);
    e.ok(&[
        "run",
        "--name",
        "changed",
        "busybox",
        "sh",
        "-c",
        "echo x > /tmp/f; mkdir /new; echo done",
    ]);
    e.ok(&["volume", "create", "--label", "a=b", "v1"]);
    for args in [
        &["system", "df"][..],
        &["system", "df", "-v"],
        &["images", "-a"],
        &["images", "--digests"],
        &[
            "images",
            "--format",
            "{{.SharedSize}} {{.UniqueSize}} {{.Size}}",
        ],
        &["history", "--no-trunc", "busybox"],
        &["logs", "--details", "changed"],
        &["port", "sleeper"],
        &["ps", "-s", "-a"],
        &["network", "ls"],
        &["network", "inspect", "none"],
        &[
            "network",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}} {{.Scope}}",
            "host",
            "none",
        ],
        &["network", "inspect", "no-such-network"],
        &["volume", "ls"],
        &["volume", "ls", "-q"],
        &["volume", "inspect", "v1"],
        &[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}} {{.Labels}}",
            "v1",
        ],
        &["volume", "inspect", "no-such-volume"],
        &["volume", "rm", "no-such-volume"],
    ] {
        same(e, args);
    }
    // dockerd lists a container's changes in Go map order, which differs from one
    // call to the next: against it, the same lines in any order.
    match e.kind {
        Kind::Berthd => same(e, &["diff", "changed"]),
        Kind::Dockerd => {
            let sorted = |o: std::process::Output| {
                let mut lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
                lines.sort();
                (code(&o), lines, stderr(&o))
            };
            let b = sorted(e.berth(&["diff", "changed"]));
            assert_eq!(b.1, ["A /new", "A /tmp/f", "C /tmp"]);
            assert_eq!(b, sorted(e.docker(&["diff", "changed"])));
        }
    }
    // What changes the daemon runs through each CLI on twins.
    let pairs: &[(&[&str], &[&str])] = &[
        (&["volume", "create", "vb"], &["volume", "create", "vd"]),
        (&["volume", "rm", "vb"], &["volume", "rm", "vd"]),
    ];
    for (b_args, d_args) in pairs {
        let b = e.berth(b_args);
        let d = e.docker(d_args);
        assert_eq!(
            (code(&b), stdout(&b).replace("vb", "X"), stderr(&b)),
            (code(&d), stdout(&d).replace("vd", "X"), stderr(&d)),
            "{b_args:?}"
        );
    }
    // All of `info` but the client's own version line.
    // The Go CLI prints `Runtimes:` in its map's iteration order, which Go makes
    // random on each run: the names are compared as a set.
    let client_version = |s: String| -> String {
        s.lines()
            .filter(|l| !l.starts_with(" Version:"))
            .map(|l| match l.strip_prefix(" Runtimes: ") {
                Some(names) => {
                    let mut n: Vec<&str> = names.split_whitespace().collect();
                    n.sort();
                    format!(" Runtimes: {}", n.join(" "))
                }
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let b = e.berth(&["info"]);
    let d = e.docker(&["info"]);
    assert_eq!(code(&b), code(&d), "info: {}", stderr(&b));
    assert!(stdout(&b).contains("Server:"), "{}", stdout(&b));
    assert_eq!(
        client_version(mask(&stdout(&b))),
        client_version(mask(&stdout(&d)))
    );
}
