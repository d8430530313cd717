//! A child process a fault test can hurt: every part of jetshop runs as
//! its own `jetshop run <part>` in the cluster suite, and the faults worth
//! testing are the ones an operating system deals out to such a process.
//!
//! [`Process`] keeps the command it was started with so that
//! [`Process::restart`] brings back the same replica (same flags, same
//! ports, same database), appends everything the process writes to one log
//! file per process (kept with `KEEP_LOGS=1` by the suite that owns the
//! folder), and sends real signals: SIGKILL (a crash, nothing drained),
//! SIGTERM (a graceful stop), SIGSTOP / SIGCONT (a stalled machine: the
//! process keeps its sockets and leases but answers nothing). Dropping it
//! kills it, so a failing test leaves nothing running.

use std::{
    ffi::OsString,
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal, unistd::Pid};

/// A child process with its output in a log file.
#[derive(Debug)]
pub struct Process {
    /// Name for messages (`orders-1`).
    name: String,
    /// The program.
    program: OsString,
    /// Its arguments, kept for restarts.
    args: Vec<OsString>,
    /// Its extra environment, kept for restarts.
    env: Vec<(OsString, OsString)>,
    /// Where stdout and stderr go (appended across restarts).
    log: PathBuf,
    /// The running child, if any.
    child: Option<Child>,
    /// Whether it was stopped with SIGSTOP and not continued yet.
    paused: bool,
}

impl Process {
    /// Start `program` with `args` and `env`, its output appended to
    /// `<log_dir>/<name>.log`.
    pub fn spawn<I, S>(
        name: &str,
        log_dir: &Path,
        program: impl Into<OsString>,
        args: I,
        env: &[(&str, &str)],
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut process = Self {
            name: name.to_owned(),
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
            log: log_dir.join(format!("{name}.log")),
            child: None,
            paused: false,
        };
        process.start();
        process
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("log file {}: {e}", self.log.display()));
        let err = log.try_clone().expect("log file handle");
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({:?}): {e}", self.name, self.program));
        self.child = Some(child);
        self.paused = false;
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether it runs (a paused process runs; an exited one does not).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, sig: signal::Signal) {
        if let Some(pid) = self.pid() {
            let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
            // ESRCH (already gone) is fine: the outcome is the same.
            let _ = signal::kill(pid, sig);
        }
    }

    /// SIGKILL and reap it: a crash, nothing drained, no last ack.
    pub fn kill(&mut self) {
        if self.paused {
            // A stopped process dies of SIGKILL too, but continuing it first
            // keeps the bookkeeping simple.
            self.resume();
        }
        self.signal(signal::Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait up to `grace` for it to drain and exit, then
    /// SIGKILL. Returns whether it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        if self.paused {
            self.resume();
        }
        self.signal(signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    /// SIGSTOP: it holds its connections, leases and unacked messages but
    /// does nothing until [`Process::resume`].
    pub fn pause(&mut self) {
        self.signal(signal::Signal::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT after [`Process::pause`].
    pub fn resume(&mut self) {
        self.signal(signal::Signal::SIGCONT);
        self.paused = false;
    }

    /// Start it again with the same command (killing it first if it runs).
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Start it again if it is not running (after [`Process::kill`]).
    pub fn ensure_running(&mut self) {
        if !self.is_running() {
            self.child = None;
            self.start();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
