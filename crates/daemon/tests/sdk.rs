//! The Docker SDK for Python (docker-py, installed by scripts/setup) drives berthd.

mod harness;

use harness::{stderr, text, Daemon};

#[test]
fn docker_py_drives_the_container_lifecycle() {
    let d = Daemon::start();
    d.import_busybox("busybox:latest");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/docker_py.py");
    let o = std::process::Command::new("python3")
        .arg(script)
        .arg(d.host())
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "docker-py failed:\n{}\n{}\nberthd log:\n{}",
        text(&o),
        stderr(&o),
        d.log()
    );
    assert!(text(&o).ends_with("ok\n"), "{}", text(&o));
}
