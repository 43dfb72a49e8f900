//! `docker run -it` and `docker exec -it` driven through tmux, as a person types:
//! the prompt, commands, a resize followed by `stty size`, ctrl-p ctrl-q to detach,
//! `docker attach`, and exit.

mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::Daemon;

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(name: &str, d: &Daemon, command: &str) -> Tmux {
        let session = format!("berth-{}-{name}", std::process::id());
        let st = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "100", "-y", "30"])
            .arg(format!(
                "env DOCKER_HOST={} DOCKER_CONFIG={}/docker-config {command}",
                d.host(),
                d.dir.display()
            ))
            .status()
            .expect("tmux");
        assert!(st.success());
        Tmux { session }
    }

    fn send(&self, keys: &[&str]) {
        let st = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(st.success());
    }

    fn screen(&self) -> String {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return;
            }
            assert!(Instant::now() < deadline, "{text:?} never appeared:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.session])
            .status()
            .is_ok_and(|s| s.success())
    }

    fn resize(&self, cols: u16, rows: u16) {
        let st = Command::new("tmux")
            .args([
                "resize-window",
                "-t",
                &self.session,
                "-x",
                &cols.to_string(),
                "-y",
                &rows.to_string(),
            ])
            .status()
            .expect("tmux resize-window");
        assert!(st.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

#[test]
fn run_it_resize_detach_attach_and_exec_it() {
    let d = Daemon::start();
    d.import_busybox("busybox");
    let t = Tmux::start("run", &d, "docker run -it --name tty busybox sh");
    t.wait_for("/ #");
    t.send(&["echo hi-$((40+2))", "Enter"]);
    t.wait_for("hi-42");
    t.send(&["stty size", "Enter"]);
    t.wait_for("30 100");
    t.resize(90, 25);
    std::thread::sleep(Duration::from_millis(300));
    t.send(&["stty size", "Enter"]);
    t.wait_for("25 90");
    // Detach: the container keeps running, the client returns.
    t.send(&["C-p", "C-q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.alive() {
        assert!(
            Instant::now() < deadline,
            "docker run did not detach:\n{}",
            t.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        d.ok(&["inspect", "--format", "{{.State.Running}}", "tty"])
            .trim(),
        "true"
    );

    // exec -it in it.
    let e = Tmux::start("exec", &d, "docker exec -it tty sh");
    e.wait_for("/ #");
    e.send(&["echo exec-$((1+1)); tty", "Enter"]);
    e.wait_for("exec-2");
    e.wait_for("/dev/pts/");
    e.send(&["exit", "Enter"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.alive() {
        assert!(Instant::now() < deadline, "docker exec did not end");
        std::thread::sleep(Duration::from_millis(50));
    }

    // attach again, and exit the shell: the container stops.
    let a = Tmux::start("attach", &d, "docker attach tty");
    std::thread::sleep(Duration::from_millis(500));
    a.send(&["echo back-$((2+3))", "Enter"]);
    a.wait_for("back-5");
    a.send(&["exit", "Enter"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d
        .ok(&["inspect", "--format", "{{.State.Running}}", "tty"])
        .trim()
        == "true"
    {
        assert!(Instant::now() < deadline, "the container did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}
