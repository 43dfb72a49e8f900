//! The shim's life after start-up: one poll(2) loop over the signalfd (SIGCHLD),
//! the listening socket, the container's output, its stdin and the clients. No
//! threads: the runtime library forks from this process, which is only safe while
//! it has one thread, and each thread would cost stack pages in the budget.
//!
//! The loop ends when the init has exited and its output is drained: the shim
//! then deletes the container from the runtime, records the exit, answers the
//! waiters and exits itself.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use berth_runtime::container::create::{self, CreateOptions, Created, Mode};
use berth_runtime::container::exec::{exec_in, ExecOptions};
use berth_runtime::container::{delete, kill, Global};
use berth_runtime::sync::Message;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::args::Options;
use crate::client::{Client, ClientState, Stream, CLOSING_GRACE, MAX_REQUEST};
use crate::error::ShimError;
use crate::logfile::{JsonFileLog, LineSplitter};
use crate::process::{stream_name, Key, Process, SinkState, Source, StdinSink, INIT};
use crate::status::{self, Exit};
use crate::sys::{self, ConsoleSocket};

pub const SOCKET: &str = "shim.sock";
/// After a process exits, how long its output may take to reach EOF (a daemonised
/// grandchild could hold the pipe open forever).
const DRAIN: Duration = Duration::from_secs(2);
/// Exec records kept after their process ended, for `exec_state`.
const MAX_EXEC_RECORDS: usize = 64;
const READ_CHUNK: usize = 8192;
/// How long a start waits for the attach clients berthd announced.
const ATTACH_WAIT: Duration = Duration::from_secs(5);

pub struct Shim {
    id: String,
    global: Global,
    state_dir: PathBuf,
    stdin_once: bool,
    cgroup_path: String,
    listener: UnixListener,
    signals: SignalFd,
    log: JsonFileLog,
    /// `procs[0]` is the init.
    procs: Vec<Process>,
    sources: Vec<Source>,
    clients: Vec<Client>,
    next_key: Key,
    pollfds: Vec<libc::pollfd>,
    tokens: Vec<Token>,
}

#[derive(Clone, Copy)]
enum Token {
    Signals,
    Listener,
    Source(usize),
    Sink(Key),
    Client(usize),
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Request {
    op: String,
    signal: Option<i32>,
    all: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    height: Option<u16>,
    width: Option<u16>,
    exec_id: Option<String>,
    process: Option<Value>,
    tty: bool,
}

/// Everything a failed start-up must undo.
struct Started {
    /// The created container, its init waiting for the word to run the program.
    held: Created,
    pid: i32,
    cgroup_path: String,
    master: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
}

impl Shim {
    /// Create and release the container; the caller is in the state directory,
    /// with SIGCHLD blocked and `signals` reading it.
    pub fn start(opts: &Options, signals: SignalFd) -> Result<Shim, ShimError> {
        let global = Global {
            root: opts.runtime_root.clone(),
            systemd_cgroup: opts.systemd_cgroup,
        };
        let log = JsonFileLog::open(&opts.log_path, opts.log_max_size, opts.log_max_file)?;
        let _ = std::fs::remove_file(SOCKET);
        let listener =
            UnixListener::bind(SOCKET).map_err(|e| ShimError::io(format!("bind {SOCKET}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ShimError::io(SOCKET, e))?;
        let started = match create_held(opts, &global) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(SOCKET);
                return Err(e);
            }
        };

        let mut init = Process::new(INIT, String::new(), started.pid, opts.tty);
        let mut sources = Vec::new();
        let mut add_source = |fd: OwnedFd, stream: u8| -> Result<(), ShimError> {
            sys::set_nonblocking(&fd)?;
            sources.push(Source {
                fd,
                stream,
                owner: INIT,
                lines: Some(LineSplitter::default()),
                done: false,
            });
            Ok(())
        };
        if let Some(master) = started.master {
            sys::set_nonblocking(&master)?;
            let dup = |fd: &OwnedFd| {
                fd.try_clone()
                    .map_err(|e| ShimError::io("dup pty master", e))
            };
            add_source(dup(&master)?, 1)?;
            if opts.stdin {
                init.stdin = Some(StdinSink::new(dup(&master)?, true));
            }
            init.master = Some(master);
        }
        if let Some(fd) = started.stdout {
            add_source(fd, 1)?;
        }
        if let Some(fd) = started.stderr {
            add_source(fd, 2)?;
        }
        if let Some(fd) = started.stdin {
            sys::set_nonblocking(&fd)?;
            init.stdin = Some(StdinSink::new(fd, false));
        }
        let held = started.held;
        let mut shim = Shim {
            id: opts.id.clone(),
            global,
            state_dir: opts.state_dir.clone(),
            stdin_once: opts.stdin_once,
            cgroup_path: started.cgroup_path,
            listener,
            signals,
            log,
            procs: vec![init],
            sources,
            clients: Vec::new(),
            next_key: INIT + 1,
            pollfds: Vec::new(),
            tokens: Vec::new(),
        };
        if opts.attach_wait > 0 {
            shim.serve_until_attached(opts.attach_wait as usize, Instant::now() + ATTACH_WAIT);
        }
        if let Err(e) = release(&held, &opts.id) {
            abandon(&shim.global, &opts.id, shim.procs[0].pid);
            let _ = std::fs::remove_file(SOCKET);
            return Err(e);
        }
        // The parsed spec is the largest thing we hold; the container runs without it.
        drop(held);
        Ok(shim)
    }

    /// Before the program runs: serve clients until `count` of them are attached to
    /// the init, or the deadline passes.
    fn serve_until_attached(&mut self, count: usize, deadline: Instant) {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let attached = self
                .clients
                .iter()
                .filter(|c| matches!(c.state, ClientState::Stream(s) if s.owner == INIT))
                .count();
            let now = Instant::now();
            if attached >= count || now >= deadline {
                return;
            }
            let cap = (deadline - now).as_millis().min(i32::MAX as u128) as i32 + 1;
            let timeout = match self.build_poll_set() {
                -1 => cap,
                t => t.min(cap),
            };
            if sys::poll(&mut self.pollfds, timeout).is_err() {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            self.dispatch_events(&mut buf);
        }
    }

    pub fn init_pid(&self) -> i32 {
        self.procs[0].pid
    }

    /// Serve until the container is gone, then clean up and exit the process.
    pub fn run(mut self) -> ! {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let timeout = self.build_poll_set();
            if let Err(e) = sys::poll(&mut self.pollfds, timeout) {
                eprintln!("berth-shim: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            self.dispatch_events(&mut buf);
            self.complete_processes();
        }
    }

    /// Handles what the last poll reported.
    fn dispatch_events(&mut self, buf: &mut [u8]) {
        for i in 0..self.pollfds.len() {
            let revents = self.pollfds[i].revents;
            if revents == 0 {
                continue;
            }
            match self.tokens[i] {
                Token::Signals => self.reap(),
                Token::Listener => self.accept(),
                Token::Source(s) => self.read_source(s, buf),
                Token::Sink(key) => self.flush_sink(key),
                Token::Client(c) => self.serve_client(c, revents, buf),
            }
        }
        self.sources.retain(|s| !s.done);
        self.clients.retain(|c| !c.dead);
    }

    /// Fill `pollfds`/`tokens` for this round; returns the poll timeout in ms.
    fn build_poll_set(&mut self) -> i32 {
        let (pollfds, tokens) = (&mut self.pollfds, &mut self.tokens);
        pollfds.clear();
        tokens.clear();
        let mut add = |fd: i32, events: i16, token: Token| {
            pollfds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            tokens.push(token);
        };
        add(
            self.signals.as_fd().as_raw_fd(),
            libc::POLLIN,
            Token::Signals,
        );
        add(self.listener.as_raw_fd(), libc::POLLIN, Token::Listener);
        for (i, s) in self.sources.iter().enumerate() {
            add(s.fd.as_raw_fd(), libc::POLLIN, Token::Source(i));
        }
        for p in &self.procs {
            if let Some(sink) = p.stdin.as_ref().filter(|s| s.has_pending()) {
                add(sink.fd().as_raw_fd(), libc::POLLOUT, Token::Sink(p.key));
            }
        }
        let now = Instant::now();
        let mut timeout: Option<Duration> = None;
        let mut sooner = |d: Duration| timeout = Some(timeout.map_or(d, |t| t.min(d)));
        for (i, c) in self.clients.iter().enumerate() {
            let mut events = 0;
            if !c.output.is_empty() {
                events |= libc::POLLOUT;
            }
            let reading = match &c.state {
                ClientState::Request | ClientState::Waiting => true,
                ClientState::Stream(s) => !s.stdin || !sink_busy(&self.procs, s.owner),
                ClientState::Closing(since) => {
                    sooner((*since + CLOSING_GRACE).saturating_duration_since(now));
                    false
                }
            };
            if reading && !c.read_closed {
                events |= libc::POLLIN;
            }
            add(c.sock.as_raw_fd(), events, Token::Client(i));
        }
        for p in &self.procs {
            if let (Some(at), false) = (p.exited, p.finished) {
                sooner((at + DRAIN).saturating_duration_since(now));
            }
        }
        match timeout {
            // Round up so that a deadline is past when we wake.
            Some(d) => d.as_millis().min(i32::MAX as u128) as i32 + 1,
            None => -1,
        }
    }

    fn process_mut(&mut self, key: Key) -> Option<&mut Process> {
        self.procs.iter_mut().find(|p| p.key == key)
    }

    /// SIGCHLD: reap every child that has exited; record those we parent.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let (pid, code) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            };
            let exit = Exit {
                code,
                at: SystemTime::now(),
            };
            if let Some(p) = self
                .procs
                .iter_mut()
                .find(|p| p.pid == pid.as_raw() && p.exit.is_none())
            {
                p.exit = Some(exit);
                p.exited = Some(Instant::now());
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_ok() {
                        self.clients.push(Client::new(sock));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    fn read_source(&mut self, index: usize, buf: &mut [u8]) {
        let n = loop {
            match nix::unistd::read(&self.sources[index].fd, buf) {
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                // EIO: a pty master whose every slave is closed.
                Err(_) => break 0,
                Ok(n) => break n,
            }
        };
        if n == 0 {
            self.close_source(index);
            return;
        }
        let data = &buf[..n];
        let source = &mut self.sources[index];
        let (owner, stream) = (source.owner, source.stream);
        if let Some(lines) = &mut source.lines {
            let log = &mut self.log;
            let now = SystemTime::now();
            lines.push(data, &mut |line| log_entry(log, stream, line, now));
        }
        for c in &mut self.clients {
            if let ClientState::Stream(s) = &c.state {
                if s.owner == owner && s.wants(stream) {
                    let raw = s.raw;
                    c.send_output(stream, data, raw);
                }
            }
        }
    }

    /// The stream has ended (or we stop waiting for it): log what is left.
    fn close_source(&mut self, index: usize) {
        let source = &mut self.sources[index];
        if source.done {
            return;
        }
        source.done = true;
        let stream = source.stream;
        if let Some(lines) = &mut source.lines {
            let log = &mut self.log;
            let now = SystemTime::now();
            lines.finish(&mut |line| log_entry(log, stream, line, now));
        }
    }

    fn flush_sink(&mut self, key: Key) {
        if let Some(p) = self.process_mut(key) {
            if let Some(SinkState::Closed) = p.stdin.as_mut().map(|s| s.flush()) {
                p.stdin = None;
            }
        }
    }

    fn serve_client(&mut self, index: usize, revents: i16, buf: &mut [u8]) {
        if revents & libc::POLLOUT != 0 {
            self.clients[index].flush();
        }
        if revents & libc::POLLIN != 0 {
            self.read_client(index, buf);
        } else if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            self.clients[index].dead = true;
        }
    }

    fn read_client(&mut self, index: usize, buf: &mut [u8]) {
        let client = &mut self.clients[index];
        let Some(n) = client.read(buf) else {
            return;
        };
        let data = &buf[..n];
        match client.state {
            ClientState::Request => {
                if n == 0 {
                    client.dead = true;
                    return;
                }
                client.input.extend_from_slice(data);
                let Some(end) = client.input.iter().position(|b| *b == b'\n') else {
                    if client.input.len() > MAX_REQUEST {
                        client.respond(&json!({"error": "request line too long"}));
                        client.close_after_flush();
                    }
                    return;
                };
                let mut rest = client.input.split_off(end + 1);
                let line = std::mem::take(&mut client.input);
                self.handle_request(index, &line);
                // Bytes sent right after the request belong to the stream (stdin).
                if !rest.is_empty() {
                    if let ClientState::Stream(s) = self.clients[index].state {
                        if s.stdin {
                            self.forward_stdin(s.owner, &rest);
                        }
                    }
                    rest.clear();
                }
            }
            ClientState::Stream(s) => {
                if n == 0 {
                    client.read_closed = true;
                    let init_once = s.owner == INIT && self.stdin_once;
                    // A terminal is not hung up when a client goes (dockerd closes
                    // stdin on the client's EOF only without a tty): that is how
                    // `docker run -it` detaches, and how `attach` comes back.
                    if s.stdin && !s.raw && (init_once || s.owner != INIT) {
                        self.end_stdin(s.owner);
                    }
                } else if s.stdin {
                    self.forward_stdin(s.owner, data);
                }
            }
            ClientState::Waiting | ClientState::Closing(_) => {
                if n == 0 {
                    client.read_closed = true;
                }
            }
        }
    }

    fn forward_stdin(&mut self, owner: Key, data: &[u8]) {
        if let Some(p) = self.process_mut(owner) {
            if let Some(SinkState::Closed) = p.stdin.as_mut().map(|s| s.write(data)) {
                p.stdin = None;
            }
        }
    }

    fn end_stdin(&mut self, owner: Key) {
        if let Some(p) = self.process_mut(owner) {
            if let Some(SinkState::Closed) = p.stdin.as_mut().map(|s| s.end()) {
                p.stdin = None;
            }
        }
    }

    fn handle_request(&mut self, index: usize, line: &[u8]) {
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => return self.answer(index, json!({"error": format!("bad request: {e}")})),
        };
        match req.op.as_str() {
            "state" => {
                let state = self.state_json();
                self.answer(index, state)
            }
            "wait" => {
                self.clients[index].state = ClientState::Waiting;
            }
            "kill" => {
                let reply = match self.kill(&req) {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => json!({"error": e}),
                };
                self.answer(index, reply)
            }
            "resize" => {
                let reply = match self.resize(&req) {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => json!({"error": e}),
                };
                self.answer(index, reply)
            }
            "exec_state" => {
                let reply = match self.exec_by_id(req.exec_id.as_deref()) {
                    Some(p) => json!({
                        "pid": p.pid,
                        "running": p.exit.is_none(),
                        "exit_code": p.exit.map(|e| e.code),
                    }),
                    None => json!({"error": "no such exec"}),
                };
                self.answer(index, reply)
            }
            "attach" => {
                let init = &self.procs[0];
                let stream = Stream {
                    owner: INIT,
                    stdin: req.stdin,
                    stdout: req.stdout,
                    stderr: req.stderr,
                    raw: init.tty,
                };
                let client = &mut self.clients[index];
                client.respond(&json!({"ok": true}));
                client.state = ClientState::Stream(stream);
            }
            "exec" => match self.exec(&req) {
                Ok((key, pid, tty)) => {
                    let client = &mut self.clients[index];
                    client.respond(&json!({"ok": true, "pid": pid}));
                    client.state = ClientState::Stream(Stream {
                        owner: key,
                        stdin: req.stdin,
                        stdout: true,
                        stderr: true,
                        raw: tty,
                    });
                }
                Err(e) => self.answer(index, json!({"error": e})),
            },
            other => self.answer(index, json!({"error": format!("unknown op {other:?}")})),
        }
    }

    fn answer(&mut self, index: usize, reply: Value) {
        let client = &mut self.clients[index];
        client.respond(&reply);
        client.close_after_flush();
    }

    fn state_json(&self) -> Value {
        let init = &self.procs[0];
        json!({
            "pid": init.pid,
            "running": init.exit.is_none(),
            "exit_code": init.exit.map(|e| e.code),
            "exited_at": init.exit.map(|e| sys::rfc3339_nano(e.at)),
            "oom_killed": init.exit.is_some() && status::oom_killed(&self.cgroup_path),
        })
    }

    fn kill(&self, req: &Request) -> Result<(), String> {
        let number = req.signal.ok_or("kill needs a signal")?;
        let signal = Signal::try_from(number).map_err(|_| format!("invalid signal {number}"))?;
        if self.procs[0].exit.is_some() {
            return Err(format!("container {} is not running", self.id));
        }
        if req.all {
            return kill::kill(&self.global, &self.id, signal, true).map_err(|e| e.to_string());
        }
        // The init is our child and not yet reaped, so its PID cannot have been
        // reused: signal it directly, without reading the runtime's state.
        nix::sys::signal::kill(Pid::from_raw(self.procs[0].pid), signal)
            .map_err(|e| format!("kill {}: {e}", self.procs[0].pid))
    }

    fn resize(&self, req: &Request) -> Result<(), String> {
        let (Some(height), Some(width)) = (req.height, req.width) else {
            return Err("resize needs height and width".into());
        };
        let process = match req.exec_id.as_deref() {
            Some(id) => self.exec_by_id(Some(id)).ok_or("no such exec")?,
            None => &self.procs[0],
        };
        let master = process.master.as_ref().ok_or("the process has no tty")?;
        sys::set_window_size(master, height, width).map_err(|e| e.to_string())
    }

    fn exec_by_id(&self, id: Option<&str>) -> Option<&Process> {
        let id = id?;
        self.procs.iter().skip(1).find(|p| p.exec_id == id)
    }

    /// Start an exec process; returns its key, host PID and whether it has a tty.
    fn exec(&mut self, req: &Request) -> Result<(Key, i32, bool), String> {
        let exec_id = req.exec_id.clone().unwrap_or_default();
        let valid = !exec_id.is_empty()
            && exec_id.len() <= 128
            && exec_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(format!("invalid exec_id {exec_id:?}"));
        }
        if self.exec_by_id(Some(&exec_id)).is_some() {
            return Err(format!("exec {exec_id:?} exists already"));
        }
        if self.procs[0].exit.is_some() {
            return Err(format!("container {} is not running", self.id));
        }
        let mut process = req.process.clone().ok_or("exec needs a process")?;
        let Some(fields) = process.as_object_mut() else {
            return Err("process must be a JSON object".into());
        };
        fields.insert("terminal".into(), Value::Bool(req.tty));
        let key = self.next_key;
        self.next_key += 1;
        let spawned = spawn_exec(&self.global, &self.id, key, &process, req.tty, req.stdin)
            .map_err(|e| e.to_string())?;
        sys::trim_heap();

        let mut proc_ = Process::new(key, exec_id, spawned.pid, req.tty);
        let add_source = |sources: &mut Vec<Source>, fd: OwnedFd, stream: u8| {
            if sys::set_nonblocking(&fd).is_ok() {
                sources.push(Source {
                    fd,
                    stream,
                    owner: key,
                    lines: None,
                    done: false,
                });
            }
        };
        if let Some(master) = spawned.master {
            let _ = sys::set_nonblocking(&master);
            if let Ok(dup) = master.try_clone() {
                add_source(&mut self.sources, dup, 1);
            }
            if req.stdin {
                if let Ok(dup) = master.try_clone() {
                    proc_.stdin = Some(StdinSink::new(dup, true));
                }
            }
            proc_.master = Some(master);
        }
        if let Some(fd) = spawned.stdout {
            add_source(&mut self.sources, fd, 1);
        }
        if let Some(fd) = spawned.stderr {
            add_source(&mut self.sources, fd, 2);
        }
        if let Some(fd) = spawned.stdin {
            if sys::set_nonblocking(&fd).is_ok() {
                proc_.stdin = Some(StdinSink::new(fd, false));
            }
        }
        let pid = proc_.pid;
        self.procs.push(proc_);
        Ok((key, pid, req.tty))
    }

    /// Close the streams of exec processes that have exited and drained; when the
    /// init has, finish.
    fn complete_processes(&mut self) {
        let now = Instant::now();
        for i in 0..self.procs.len() {
            let p = &self.procs[i];
            let Some(exited) = p.exited else { continue };
            if p.finished {
                continue;
            }
            let key = p.key;
            let draining = self.sources.iter().any(|s| s.owner == key && !s.done);
            if draining && now < exited + DRAIN {
                continue;
            }
            if key == INIT {
                self.finish();
            }
            for s in 0..self.sources.len() {
                if self.sources[s].owner == key {
                    self.close_source(s);
                }
            }
            self.sources.retain(|s| !s.done);
            for c in &mut self.clients {
                if matches!(c.state, ClientState::Stream(s) if s.owner == key) {
                    c.close_after_flush();
                }
            }
            let p = &mut self.procs[i];
            p.finished = true;
            p.master = None;
            p.stdin = None;
        }
        for c in &mut self.clients {
            if matches!(c.state, ClientState::Closing(since) if now >= since + CLOSING_GRACE) {
                c.dead = true;
            }
        }
        self.clients.retain(|c| !c.dead);
        let records = self.procs.iter().filter(|p| p.finished).count();
        if records > MAX_EXEC_RECORDS {
            if let Some(oldest) = self.procs.iter().position(|p| p.finished) {
                self.procs.remove(oldest);
            }
        }
    }

    /// The init has exited and its output is in: record the exit and go.
    fn finish(&mut self) -> ! {
        for s in 0..self.sources.len() {
            if self.sources[s].owner == INIT {
                self.close_source(s);
            }
        }
        let exit = self.procs[0].exit.unwrap_or(Exit {
            code: 255,
            at: SystemTime::now(),
        });
        // Read before delete: the counter lives in the cgroup that delete removes.
        let oom = status::oom_killed(&self.cgroup_path);
        if let Err(e) = status::write_exit_file(&self.state_dir, exit, oom) {
            eprintln!("berth-shim: {e}");
        }
        let reply = json!({
            "pid": self.procs[0].pid,
            "running": false,
            "exit_code": exit.code,
            "exited_at": sys::rfc3339_nano(exit.at),
            "oom_killed": oom,
        });
        // No new connections from here on; those that raced our exit (accepted
        // with their request unread, or still in the backlog) are answered from
        // the final state too. A client that connects even later sees EOF or a
        // reset and reads the exit file.
        let _ = std::fs::remove_file(self.state_dir.join(SOCKET));
        while let Ok((sock, _)) = self.listener.accept() {
            self.clients.push(Client::new(sock));
        }
        for c in &mut self.clients {
            if matches!(c.state, ClientState::Request) {
                c.state = late_request(c, &reply);
            }
            if matches!(c.state, ClientState::Waiting) {
                c.respond(&reply);
            }
            c.flush_blocking();
        }
        // Closed now, not at our exit: attached clients see the end of the stream.
        self.clients.clear();
        // The runtime's delete (cgroups, state) after the answer, off the exit's path:
        // berthd waits for this process to be gone before it starts the container
        // again or removes its files.
        if let Err(e) = delete::delete(&self.global, &self.id, true) {
            eprintln!("berth-shim: delete container {}: {e}", self.id);
        }
        std::process::exit(0);
    }
}

/// Read the rest of a request that arrived as the container exited, briefly
/// blocking, and answer it from `final_state`.
fn late_request(client: &mut Client, final_state: &Value) -> ClientState {
    let _ = client.sock.set_nonblocking(false);
    let _ = client
        .sock
        .set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 512];
    while !client.input.contains(&b'\n') && client.input.len() < 4096 {
        match std::io::Read::read(&mut client.sock, &mut buf) {
            Ok(n) if n > 0 => client.input.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let end = client
        .input
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(client.input.len());
    let op = serde_json::from_slice::<Request>(&client.input[..end]).map(|r| r.op);
    match op.as_deref() {
        Ok("wait") => ClientState::Waiting,
        Ok("state") => {
            client.respond(final_state);
            ClientState::Closing(Instant::now())
        }
        _ => {
            let id_gone = json!({"error": "the container has exited"});
            client.respond(&id_gone);
            ClientState::Closing(Instant::now())
        }
    }
}

/// Does `owner`'s stdin hold bytes it has not taken yet? Its clients then wait.
fn sink_busy(procs: &[Process], owner: Key) -> bool {
    procs
        .iter()
        .find(|p| p.key == owner)
        .and_then(|p| p.stdin.as_ref())
        .is_some_and(|s| s.has_pending())
}

fn log_entry(log: &mut JsonFileLog, stream: u8, line: &[u8], now: SystemTime) {
    if let Err(e) = log.write_entry(stream_name(stream), line, now) {
        eprintln!("berth-shim: {e}");
    }
}

/// Create the container with our pipes (or a pty) as its stdio and let it run.
/// Creates the container and takes its stdio; its init waits for [`release`].
fn create_held(opts: &Options, global: &Global) -> Result<Started, ShimError> {
    let null = sys::open_null()?;
    let console = if opts.tty {
        Some(ConsoleSocket::bind(".console.sock")?)
    } else {
        None
    };
    let (mut ours, theirs) = stdio_pipes(!opts.tty && opts.stdin, !opts.tty)?;
    let stdio = [
        theirs[0].as_ref().unwrap_or(&null).as_raw_fd(),
        theirs[1].as_ref().unwrap_or(&null).as_raw_fd(),
        theirs[2].as_ref().unwrap_or(&null).as_raw_fd(),
    ];
    let created = create::create(
        global,
        &CreateOptions {
            id: opts.id.clone(),
            bundle: opts.bundle.clone(),
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            stdio: Some(stdio),
            ..Default::default()
        },
        Mode::Run,
    )?;
    // The container holds its ends now; ours would keep its stdin from EOF and
    // its output from ever ending.
    drop(theirs);
    let pid = created.state.pid;
    let cgroup_path = created.state.cgroup_path.clone();
    let master = match console.as_ref().map(|c| c.receive_master()).transpose() {
        Ok(m) => m,
        Err(e) => {
            abandon(global, &opts.id, pid);
            return Err(e);
        }
    };
    if let (Some(m), Some((h, w))) = (master.as_ref(), opts.console_size) {
        // Before the program runs, so that its first look at the terminal is right.
        let _ = sys::set_window_size(m, h, w);
    }
    Ok(Started {
        held: created,
        pid,
        cgroup_path,
        master,
        stdin: ours[0].take(),
        stdout: ours[1].take(),
        stderr: ours[2].take(),
    })
}

/// Lets the held init run the container's program; an error if it could not.
fn release(held: &Created, id: &str) -> Result<(), ShimError> {
    held.channel.send(&Message::Proceed)?;
    // The channel is close-on-exec in the init: EOF means it has exec'd the
    // container's program; an error means it could not.
    match held.channel.recv()? {
        None => Ok(()),
        Some(Message::Error(text)) => Err(ShimError::Container {
            id: id.to_string(),
            message: text,
        }),
        Some(other) => Err(ShimError::Container {
            id: id.to_string(),
            message: format!("unexpected message from the init: {other:?}"),
        }),
    }
}

/// Removes a container whose start failed and reaps its init.
fn abandon(global: &Global, id: &str, pid: i32) {
    if let Err(d) = delete::delete(global, id, true) {
        eprintln!("berth-shim: delete container {id}: {d}");
    }
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

type Ends = [Option<OwnedFd>; 3];

/// Pipes for stdin (if wanted) and stdout/stderr (if not a tty): (our ends, the
/// container's ends).
fn stdio_pipes(stdin: bool, output: bool) -> Result<(Ends, Ends), ShimError> {
    let mut ours: Ends = [None, None, None];
    let mut theirs: Ends = [None, None, None];
    if stdin {
        let (r, w) = sys::pipe()?;
        ours[0] = Some(w);
        theirs[0] = Some(r);
    }
    if output {
        for i in 1..3 {
            let (r, w) = sys::pipe()?;
            ours[i] = Some(r);
            theirs[i] = Some(w);
        }
    }
    Ok((ours, theirs))
}

struct SpawnedExec {
    pid: i32,
    master: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// Run an exec process detached through the runtime; it is re-parented to us
/// (we are a subreaper) when the runtime's intermediate process exits.
fn spawn_exec(
    global: &Global,
    id: &str,
    key: Key,
    process: &Value,
    tty: bool,
    stdin: bool,
) -> Result<SpawnedExec, ShimError> {
    let process_file = PathBuf::from(format!("exec-{key}.json"));
    let pid_file = PathBuf::from(format!("exec-{key}.pid"));
    let result = (|| {
        std::fs::write(&process_file, process.to_string())
            .map_err(|e| ShimError::io(format!("write {}", process_file.display()), e))?;
        let null = sys::open_null()?;
        let console = if tty {
            Some(ConsoleSocket::bind(&format!(".console-exec-{key}.sock"))?)
        } else {
            None
        };
        let (mut ours, theirs) = stdio_pipes(!tty && stdin, !tty)?;
        let stdio = [
            theirs[0].as_ref().unwrap_or(&null).as_raw_fd(),
            theirs[1].as_ref().unwrap_or(&null).as_raw_fd(),
            theirs[2].as_ref().unwrap_or(&null).as_raw_fd(),
        ];
        exec_in(
            global,
            &ExecOptions {
                id: id.to_string(),
                process_file: Some(process_file.clone()),
                tty,
                console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
                detach: true,
                pid_file: Some(pid_file.clone()),
                stdio: Some(stdio),
                ..Default::default()
            },
        )?;
        drop(theirs);
        let pid = read_pid(&pid_file)?;
        let master = match console.as_ref().map(|c| c.receive_master()).transpose() {
            Ok(m) => m,
            Err(e) => {
                // Without its pty nobody could talk to it: do not leave it behind.
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                return Err(e);
            }
        };
        Ok(SpawnedExec {
            pid,
            master,
            stdin: ours[0].take(),
            stdout: ours[1].take(),
            stderr: ours[2].take(),
        })
    })();
    let _ = std::fs::remove_file(&process_file);
    let _ = std::fs::remove_file(&pid_file);
    result
}

fn read_pid(path: &Path) -> Result<i32, ShimError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ShimError::io(format!("read {}", path.display()), e))?;
    text.trim().parse().map_err(|_| {
        ShimError::io(
            format!("read {}", path.display()),
            std::io::Error::other(format!("not a pid: {text:?}")),
        )
    })
}
