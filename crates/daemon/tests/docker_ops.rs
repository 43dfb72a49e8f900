//! Docker's own CLI against berthd: pause, rename, update, top, stats, diff, export,
//! cp (both ways, and paths that try to leave the container), commit.

mod harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{stderr, text, Daemon};

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    d.ok(&["inspect", "--format", format, name])
        .trim()
        .to_string()
}

/// The container's directory in one cgroup v1 hierarchy (`memory`, `freezer`, ...).
fn cgroup_dir(d: &Daemon, controller: &str, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(&d.cgroup_parent)
        .join(id)
}

/// `--until` for `docker events`: a second from now, in seconds since the epoch.
fn until_now() -> String {
    harness::unix_secs(1)
}

fn busybox_daemon() -> Daemon {
    let d = Daemon::start();
    d.import_busybox("busybox:latest");
    d
}

#[test]
fn pause_and_unpause() {
    let d = busybox_daemon();
    let id = d.ok(&["run", "-d", "--name", "pp", "busybox", "sleep", "1000"]);
    let id = id.trim();
    d.ok(&["pause", "pp"]);
    assert_eq!(
        inspect(
            &d,
            "pp",
            "{{.State.Status}} {{.State.Paused}} {{.State.Running}}"
        ),
        "paused true true"
    );
    let freezer = cgroup_dir(&d, "freezer", id).join("freezer.state");
    assert_eq!(
        fs::read_to_string(&freezer).unwrap_or_default().trim(),
        "FROZEN"
    );
    let ps = d.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.starts_with("pp Up ") && ps.trim_end().ends_with("(Paused)"),
        "{ps}"
    );
    let (code, body) = d.api("POST", "/containers/pp/exec", Some("{\"Cmd\": [\"true\"]}"));
    assert_eq!(code, 409, "{body}");
    let exec = d.docker(&["exec", "pp", "true"]);
    assert!(!exec.status.success());
    assert!(stderr(&exec).contains("is paused"), "{}", stderr(&exec));
    let (code, body) = d.api("POST", "/containers/pp/pause", None);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("is already paused"), "{body}");

    d.ok(&["unpause", "pp"]);
    assert_eq!(
        inspect(&d, "pp", "{{.State.Status}} {{.State.Paused}}"),
        "running false"
    );
    assert_eq!(
        fs::read_to_string(&freezer).unwrap_or_default().trim(),
        "THAWED"
    );
    assert_eq!(d.ok(&["exec", "pp", "echo", "back"]), "back\n");
    let (code, _) = d.api("POST", "/containers/pp/unpause", None);
    assert_eq!(code, 409);

    let events = d.ok(&[
        "events",
        "--since",
        "1",
        "--until",
        &until_now(),
        "--filter",
        "container=pp",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = events.lines().collect();
    let pause_at = actions.iter().position(|a| *a == "pause");
    let unpause_at = actions.iter().position(|a| *a == "unpause");
    assert!(pause_at.is_some() && pause_at < unpause_at, "{events}");

    // A paused container stops and is killed: the signal lands once it is thawed.
    d.ok(&["pause", "pp"]);
    d.ok(&["stop", "-t", "1", "pp"]);
    assert_eq!(
        inspect(&d, "pp", "{{.State.Status}} {{.State.Paused}}"),
        "exited false"
    );
    d.ok(&["start", "pp"]);
    d.ok(&["pause", "pp"]);
    d.ok(&["kill", "pp"]);
    d.ok(&["wait", "pp"]);
    assert_eq!(
        inspect(&d, "pp", "{{.State.Status}} {{.State.Paused}}"),
        "exited false"
    );
    let (code, _) = d.api("POST", "/containers/pp/pause", None);
    assert_eq!(code, 409);
    d.ok(&["start", "pp"]);

    // A paused container can still be removed by force.
    d.ok(&["pause", "pp"]);
    d.ok(&["rm", "-f", "pp"]);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    let (code, _) = d.api("POST", "/containers/nope/pause", None);
    assert_eq!(code, 404);
}

#[test]
fn rename() {
    let d = busybox_daemon();
    d.ok(&["run", "-d", "--name", "first", "busybox", "sleep", "1000"]);
    d.ok(&["create", "--name", "other", "busybox", "true"]);
    d.ok(&["rename", "first", "second"]);
    assert_eq!(inspect(&d, "second", "{{.Name}}"), "/second");
    assert!(!d.docker(&["inspect", "first"]).status.success());
    let events = d.ok(&[
        "events",
        "--since",
        "1",
        "--until",
        &until_now(),
        "--filter",
        "event=rename",
        "--format",
        "{{.Actor.Attributes.oldName}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(events, "/first second\n");
    let names = d.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        names.contains("second") && !names.contains("first"),
        "{names}"
    );
    // The old name is free again.
    d.ok(&["create", "--name", "first", "busybox", "true"]);

    let o = d.docker(&["rename", "second", "other"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is already in use"), "{}", stderr(&o));
    let (code, _) = d.api("POST", "/containers/second/rename?name=other", None);
    assert_eq!(code, 409);
    let (code, body) = d.api("POST", "/containers/second/rename?name=bad%20name", None);
    assert_eq!(code, 400);
    assert!(body.contains("Invalid container name (bad name)"), "{body}");
    let (code, _) = d.api("POST", "/containers/second/rename?name=", None);
    assert_eq!(code, 400);
    assert_eq!(inspect(&d, "second", "{{.Name}}"), "/second");
}

#[test]
fn update_writes_the_live_cgroup() {
    let d = busybox_daemon();
    let id = d.ok(&["run", "-d", "--name", "uu", "busybox", "sleep", "1000"]);
    let id = id.trim();
    d.ok(&[
        "update",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--cpu-shares",
        "512",
        "--pids-limit",
        "50",
        "--restart",
        "on-failure:3",
        "uu",
    ]);
    let mem = cgroup_dir(&d, "memory", id);
    assert_eq!(
        fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .unwrap_or_default()
            .trim(),
        "67108864"
    );
    assert_eq!(
        fs::read_to_string(mem.join("memory.memsw.limit_in_bytes"))
            .unwrap_or_default()
            .trim(),
        "134217728"
    );
    assert_eq!(
        fs::read_to_string(cgroup_dir(&d, "cpu", id).join("cpu.shares"))
            .unwrap_or_default()
            .trim(),
        "512"
    );
    assert_eq!(
        fs::read_to_string(cgroup_dir(&d, "pids", id).join("pids.max"))
            .unwrap_or_default()
            .trim(),
        "50"
    );
    assert_eq!(
        inspect(
            &d,
            "uu",
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "67108864 134217728 512 50 on-failure:3"
    );
    d.ok(&["update", "--cpus", "0.5", "--cpuset-cpus", "0", "uu"]);
    let cpu = cgroup_dir(&d, "cpu", id);
    assert_eq!(
        fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
            .unwrap_or_default()
            .trim(),
        "50000"
    );
    assert_eq!(
        fs::read_to_string(cgroup_dir(&d, "cpuset", id).join("cpuset.cpus"))
            .unwrap_or_default()
            .trim(),
        "0"
    );
    // Memory untouched by a CPU update.
    assert_eq!(
        fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .unwrap_or_default()
            .trim(),
        "67108864"
    );
    // The process sees its own limit too.
    let seen = d.ok(&[
        "exec",
        "uu",
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(seen, "67108864\n");

    // A larger limit than the swap already set, without a new swap: Docker's refusal.
    let o = d.docker(&["update", "-m", "256m", "uu"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Memory limit should be smaller than already set memoryswap limit"),
        "{}",
        stderr(&o)
    );
    let (code, body) = d.api(
        "POST",
        "/containers/uu/update",
        Some("{\"Memory\": \"lots\"}"),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Memory"), "{body}");

    // A stopped container's update is saved and applied at its next start.
    d.ok(&["create", "--name", "later", "busybox", "sleep", "1000"]);
    d.ok(&["update", "--cpu-shares", "256", "later"]);
    assert_eq!(inspect(&d, "later", "{{.HostConfig.CpuShares}}"), "256");
    let later = inspect(&d, "later", "{{.Id}}");
    d.ok(&["start", "later"]);
    assert_eq!(
        fs::read_to_string(cgroup_dir(&d, "cpu", &later).join("cpu.shares"))
            .unwrap_or_default()
            .trim(),
        "256"
    );
}

#[test]
fn top_lists_the_container_processes() {
    let d = busybox_daemon();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "tt",
        "busybox",
        "sh",
        "-c",
        "sleep 1001 & sleep 1002",
    ]);
    let top = d.ok(&["top", "tt"]);
    let mut lines = top.lines();
    let header = lines.next().unwrap_or("");
    assert!(header.contains("PID") && header.contains("CMD"), "{top}");
    assert!(
        top.contains("sleep 1001") && top.contains("sleep 1002"),
        "{top}"
    );
    // sh execs its last command: two sleeps.
    assert_eq!(lines.count(), 2, "{top}");
    // Nothing of the host.
    assert!(
        !top.contains("berthd") && !top.contains("berth-shim"),
        "{top}"
    );
    let top = d.ok(&["top", "tt", "-o", "pid,comm"]);
    assert!(top.starts_with("PID") && top.contains("sleep"), "{top}");

    d.ok(&["create", "--name", "idle", "busybox", "true"]);
    let o = d.docker(&["top", "idle"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
}

#[test]
fn stats_no_stream() {
    let d = busybox_daemon();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ss",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    let out = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}} {{.CPUPerc}} {{.PIDs}}",
        "ss",
    ]);
    let fields: Vec<&str> = out.split_whitespace().collect();
    // "s 1.2MiB / 64MiB 99.87% 1"
    assert_eq!(fields.len(), 6, "{out}");
    assert_eq!(fields[0], "ss", "{out}");
    assert_eq!(fields[3], "64MiB", "{out}");
    assert_ne!(fields[1], "0B", "{out}");
    let cpu: f64 = fields[4].trim_end_matches('%').parse().unwrap_or(0.0);
    assert!(cpu > 20.0, "a busy loop uses a CPU: {out}");
    assert_eq!(fields[5], "1", "{out}");

    let (code, body) = d.api(
        "GET",
        "/containers/ss/stats?stream=false&one-shot=true",
        None,
    );
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    assert!(
        v["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{body}"
    );
    assert!(
        v["cpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0) > 0,
        "{body}"
    );
    assert_eq!(v["memory_stats"]["limit"], 64 << 20, "{body}");
    assert!(
        v["memory_stats"]["usage"].as_u64().unwrap_or(0) > 0,
        "{body}"
    );
    assert_eq!(v["pids_stats"]["current"], 1, "{body}");
    assert_eq!(v["name"], "/ss", "{body}");
    // Streamed: one reading a second, each over the one before.
    let streamed = Command::new("curl")
        .args(["-s", "--max-time", "2.5", "--unix-socket"])
        .arg(&d.socket)
        .arg("http://berth/containers/ss/stats")
        .output()
        .expect("curl");
    let lines: Vec<serde_json::Value> = text(&streamed)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.len() >= 2, "{}", text(&streamed));
    assert_eq!(lines[1]["precpu_stats"], lines[0]["cpu_stats"]);
    assert_eq!(lines[1]["preread"], lines[0]["read"]);
    let (code, _) = d.api("GET", "/containers/nope/stats?stream=false", None);
    assert_eq!(code, 404);
}

#[test]
fn diff_and_export() {
    let d = busybox_daemon();
    d.ok(&["run", "-d", "--name", "cc", "busybox", "sleep", "1000"]);
    d.ok(&[
        "exec",
        "cc",
        "sh",
        "-c",
        "touch /tmp/x && rm /etc/group && mkdir /newdir && echo hi > /newdir/f",
    ]);
    let diff = d.ok(&["diff", "cc"]);
    let lines: Vec<&str> = diff.lines().collect();
    for want in ["A /tmp/x", "D /etc/group", "A /newdir", "A /newdir/f"] {
        assert!(lines.contains(&want), "{want} missing from:\n{diff}");
    }
    assert!(
        !diff.contains("hostname") && !diff.contains("resolv.conf") && !diff.contains("/dev"),
        "{diff}"
    );

    let tar = d.dir.join("c.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap_or_default(), "cc"]);
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .expect("tar");
    let names = text(&list);
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox"),
        "{names}"
    );
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "newdir/f"),
        "{names}"
    );
    assert!(
        !names
            .lines()
            .any(|l| l.trim_start_matches("./") == "etc/group"),
        "{names}"
    );

    // A container that never ran: its rootfs is mounted for the export only.
    d.ok(&["create", "--name", "fresh", "busybox", "true"]);
    let out = d.docker_cmd(&["export", "fresh"]).output().expect("export");
    assert!(out.status.success(), "{}", stderr(&out));
    let tar2 = d.dir.join("fresh.tar");
    fs::write(&tar2, &out.stdout).expect("write");
    let names = text(
        &Command::new("tar")
            .arg("-tf")
            .arg(&tar2)
            .output()
            .expect("tar"),
    );
    assert!(names.contains("bin/busybox"), "{names}");
    assert_eq!(d.ok(&["diff", "fresh"]), "");
    let fresh = inspect(&d, "fresh", "{{.Id}}");
    assert!(
        harness::mounts_under(&d.dir)
            .iter()
            .all(|m| !m.to_string_lossy().contains(&fresh)),
        "the stopped container's rootfs stays mounted"
    );
}

#[test]
fn cp_both_ways() {
    let d = busybox_daemon();
    d.ok(&["run", "-d", "--name", "cc", "busybox", "sleep", "1000"]);
    let host = d.dir.join("cp");
    fs::create_dir_all(host.join("tree/sub")).expect("mkdir");
    fs::write(host.join("file.txt"), "from the host\n").expect("write");
    fs::write(host.join("tree/sub/deep.txt"), "deep\n").expect("write");
    let h = |p: &str| host.join(p).display().to_string();

    // Host to container: a file into a directory, a file to a new name, a tree.
    d.ok(&["cp", &h("file.txt"), "cc:/tmp/"]);
    d.ok(&["cp", &h("file.txt"), "cc:/tmp/renamed.txt"]);
    d.ok(&["cp", &h("tree"), "cc:/tmp/"]);
    assert_eq!(
        d.ok(&["exec", "cc", "cat", "/tmp/file.txt"]),
        "from the host\n"
    );
    assert_eq!(
        d.ok(&["exec", "cc", "cat", "/tmp/renamed.txt"]),
        "from the host\n"
    );
    assert_eq!(
        d.ok(&["exec", "cc", "cat", "/tmp/tree/sub/deep.txt"]),
        "deep\n"
    );
    assert_eq!(
        d.ok(&["exec", "cc", "stat", "-c", "%u", "/tmp/file.txt"]),
        "0\n"
    );

    // A file does not replace a directory (noOverwriteDirNonDir), nor the other way.
    fs::create_dir_all(host.join("clash")).expect("mkdir");
    fs::write(host.join("clash/tree"), "a file\n").expect("write");
    let o = d.docker(&["cp", &h("clash/tree"), "cc:/tmp/"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot overwrite directory"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        d.ok(&["exec", "cc", "cat", "/tmp/tree/sub/deep.txt"]),
        "deep\n"
    );
    // An uploaded `.wh.` name is a file, not an overlay whiteout.
    fs::write(host.join(".wh.file.txt"), "plain\n").expect("write");
    d.ok(&["cp", &h(".wh.file.txt"), "cc:/tmp/"]);
    assert_eq!(
        d.ok(&["exec", "cc", "cat", "/tmp/.wh.file.txt", "/tmp/file.txt"]),
        "plain\nfrom the host\n"
    );

    // Container to host: a file, a directory, a directory's contents.
    d.ok(&[
        "exec",
        "cc",
        "sh",
        "-c",
        "mkdir -p /data/a && echo one > /data/a/1 && echo two > /data/2",
    ]);
    d.ok(&["cp", "cc:/data/2", &h("two.txt")]);
    assert_eq!(
        fs::read_to_string(host.join("two.txt")).unwrap_or_default(),
        "two\n"
    );
    d.ok(&["cp", "cc:/data", &h("out")]);
    assert_eq!(
        fs::read_to_string(host.join("out/a/1")).unwrap_or_default(),
        "one\n"
    );
    d.ok(&["cp", "cc:/data/", &h("slash")]);
    assert_eq!(
        fs::read_to_string(host.join("slash/a/1")).unwrap_or_default(),
        "one\n"
    );
    // Through a symlink to the directory, with a trailing slash.
    d.ok(&["exec", "cc", "ln", "-s", "/data", "/datalink"]);
    d.ok(&["cp", "cc:/datalink/", &h("vialink")]);
    assert_eq!(
        fs::read_to_string(host.join("vialink/a/1")).unwrap_or_default(),
        "one\n"
    );
    fs::create_dir_all(host.join("contents")).expect("mkdir");
    d.ok(&["cp", "cc:/data/.", &h("contents")]);
    assert_eq!(
        fs::read_to_string(host.join("contents/2")).unwrap_or_default(),
        "two\n"
    );
    assert_eq!(
        fs::read_to_string(host.join("contents/a/1")).unwrap_or_default(),
        "one\n"
    );

    let o = d.docker(&["cp", "cc:/no/such", &h("x")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Could not find the file /no/such in container cc"),
        "{}",
        stderr(&o)
    );
    let head = Command::new("curl")
        .args([
            "-sI",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(&d.socket)
        .arg("http://berth/containers/cc/archive?path=/nope")
        .output()
        .expect("curl");
    assert_eq!(text(&head), "404");

    // Uploads need a directory to land in, and a writable rootfs.
    let put = |container: &str, path: &str| -> String {
        let curl = Command::new("curl")
            .args(["-s", "-w", " %{http_code}", "-X", "PUT", "--unix-socket"])
            .arg(&d.socket)
            .arg("--data-binary")
            .arg(format!("@{}", harness::busybox_tar(&d.dir).display()))
            .arg(format!(
                "http://berth/containers/{container}/archive?path={path}"
            ))
            .output()
            .expect("curl");
        text(&curl)
    };
    let answer = put("cc", "/tmp/file.txt");
    assert!(
        answer.contains("extraction point is not a directory") && answer.ends_with(" 400"),
        "{answer}"
    );
    let answer = put("cc", "/no/where");
    assert!(answer.ends_with(" 404"), "{answer}");
    d.ok(&["create", "--name", "ro", "--read-only", "busybox", "true"]);
    let answer = put("ro", "/tmp");
    assert!(
        answer.contains("read-only") && answer.ends_with(" 400"),
        "{answer}"
    );

    // A stopped container, both ways.
    d.ok(&["stop", "-t", "0", "cc"]);
    d.ok(&["cp", &h("file.txt"), "cc:/etc/added.txt"]);
    d.ok(&["cp", "cc:/etc/added.txt", &h("back.txt")]);
    assert_eq!(
        fs::read_to_string(host.join("back.txt")).unwrap_or_default(),
        "from the host\n"
    );
    d.ok(&["start", "cc"]);
    assert_eq!(
        d.ok(&["exec", "cc", "cat", "/etc/added.txt"]),
        "from the host\n"
    );
}

#[test]
fn cp_stays_inside_the_container() {
    let d = busybox_daemon();
    d.ok(&["run", "-d", "--name", "cc", "busybox", "sleep", "1000"]);
    d.ok(&[
        "exec",
        "cc",
        "sh",
        "-c",
        "ln -s / /tmp/root && ln -s ../../../../../.. /tmp/up && mkdir /tmp/drop",
    ]);
    let unique = format!("berth-cp-escape-{}", std::process::id());
    let host_file = d.dir.join(&unique);
    fs::write(&host_file, "payload\n").expect("write");
    let src = host_file.display().to_string();

    // Writes: through `..` and through symlinks to /, the file lands in the container's
    // root, never in the host's.
    for dest in [
        "cc:/../../../../",
        "cc:/tmp/root/",
        "cc:/tmp/up/",
        "cc:/tmp/root/tmp/../..",
    ] {
        d.ok(&["cp", &src, dest]);
        assert!(
            !Path::new("/").join(&unique).exists(),
            "{dest} wrote onto the host"
        );
        assert_eq!(
            d.ok(&["exec", "cc", "cat", &format!("/{unique}")]),
            "payload\n",
            "{dest}"
        );
        d.ok(&["exec", "cc", "rm", &format!("/{unique}")]);
    }

    // Reads: the host's /etc/os-release is not in busybox; every way to it fails.
    assert!(Path::new("/etc/os-release").exists());
    for src in [
        "cc:/../../../etc/os-release",
        "cc:/tmp/root/etc/os-release",
        "cc:/tmp/up/etc/os-release",
    ] {
        let o = d.docker(&["cp", src, &d.dir.join("leak").display().to_string()]);
        assert!(!o.status.success(), "{src} read a host file");
        assert!(!d.dir.join("leak").exists(), "{src}");
    }
    // A read through the symlink gives the container's own file.
    let out = d.dir.join("passwd");
    d.ok(&["cp", "cc:/tmp/root/etc/passwd", &out.display().to_string()]);
    let passwd = fs::read_to_string(&out).unwrap_or_default();
    assert!(
        passwd.starts_with("root:x:0:0:root:/root:/bin/sh\nnobody"),
        "{passwd}"
    );

    // Archives whose entries climb out with `..`, or through a symlink they bring
    // along, are refused and leave the host untouched.
    let put = |tarball: &Path| -> String {
        let curl = Command::new("curl")
            .args(["-s", "-w", " %{http_code}", "-X", "PUT", "--unix-socket"])
            .arg(&d.socket)
            .arg("--data-binary")
            .arg(format!("@{}", tarball.display()))
            .arg("http://berth/containers/cc/archive?path=/tmp/drop")
            .output()
            .expect("curl");
        text(&curl)
    };
    let evil = d.dir.join("evil");
    fs::create_dir_all(&evil).expect("mkdir");
    fs::write(evil.join("x"), "x\n").expect("write");
    std::os::unix::fs::symlink("/", evil.join("l")).expect("symlink");
    let dotdot = d.dir.join("dotdot.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&evil)
        .arg("-cf")
        .arg(&dotdot)
        .arg("--transform")
        .arg(format!("s,^x$,../../../../{unique},"))
        .arg("x")
        .status()
        .expect("tar");
    assert!(st.success());
    let answer = put(&dotdot);
    assert!(
        answer.ends_with(" 400") && answer.contains("escapes"),
        "{answer}"
    );
    assert!(
        !Path::new("/").join(&unique).exists(),
        "an archive wrote onto the host"
    );

    let through_link = d.dir.join("link.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&evil)
        .arg("-cf")
        .arg(&through_link)
        .arg("l")
        .status()
        .expect("tar");
    assert!(st.success());
    let st = Command::new("tar")
        .arg("-C")
        .arg(&evil)
        .arg("-rf")
        .arg(&through_link)
        .arg("--transform")
        .arg(format!("s,^x$,l/{unique},"))
        .arg("x")
        .status()
        .expect("tar");
    assert!(st.success());
    let answer = put(&through_link);
    assert!(
        !Path::new("/").join(&unique).exists(),
        "an archive wrote onto the host: {answer}"
    );
    let inside = d.docker(&["exec", "cc", "test", "-e", &format!("/{unique}")]);
    assert!(
        !inside.status.success(),
        "written through the link: {answer}"
    );
}

#[test]
fn commit_then_run_the_new_image() {
    let d = busybox_daemon();
    d.ok(&[
        "run",
        "--name",
        "cc",
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sh",
        "-c",
        "echo committed > /hello.txt",
    ]);
    let id = d.ok(&[
        "commit",
        "-c",
        "ENV FOO=bar",
        "-c",
        "CMD [\"cat\", \"/hello.txt\"]",
        "-m",
        "a message",
        "-a",
        "someone",
        "cc",
        "mycommit:v1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let images = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains("mycommit:v1"), "{images}");
    assert_eq!(d.ok(&["run", "--rm", "mycommit:v1"]), "committed\n");
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "mycommit:v1",
            "sh",
            "-c",
            "echo $FOO $FROM_RUN"
        ]),
        "bar 1\n"
    );
    let inspect = d.ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Author}} {{len .RootFS.Layers}}",
        "mycommit:v1",
    ]);
    assert_eq!(inspect.trim(), "someone 2");
    let history = d.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.Comment}}",
        "mycommit:v1",
    ]);
    assert!(history.contains("a message"), "{history}");

    // A running container, paused for the commit and running after it.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "echo live > /live.txt; sleep 1000",
    ]);
    for _ in 0..50 {
        if d.docker(&["exec", "live", "test", "-f", "/live.txt"])
            .status
            .success()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    d.ok(&["commit", "live", "fromlive"]);
    assert_eq!(inspect_state(&d, "live"), "running false");
    assert_eq!(
        d.ok(&["run", "--rm", "fromlive", "cat", "/live.txt"]),
        "live\n"
    );

    let o = d.docker(&["commit", "nope", "x"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No such container: nope"),
        "{}",
        stderr(&o)
    );
    let o = d.docker(&["commit", "-c", "RUN rm -rf /", "live", "y"]);
    assert!(!o.status.success());
}

fn inspect_state(d: &Daemon, name: &str) -> String {
    inspect(d, name, "{{.State.Status}} {{.State.Paused}}")
}
