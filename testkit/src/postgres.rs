//! A private PostgreSQL server for one test, so the test may stop and
//! start it: the shared server at `TEST_POSTGRES_URL` serves every other
//! suite at once and must never go down under them.
//!
//! The cluster lives in a temporary folder (`initdb`, trust auth for the
//! `postgres` role, no fsync: a test's data need not survive the machine)
//! and listens on a free loopback port, its socket in the same folder.
//! PostgreSQL refuses to run as root, so when the test runs as root every
//! server command runs as an unprivileged account (`TEST_POSTGRES_OS_USER`,
//! else `postgres`, else `nobody`) through `setpriv`. The binaries are
//! `TEST_POSTGRES_BIN_DIR`, else the newest `/usr/lib/postgresql/*/bin`,
//! else `PATH`.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::free_port;

/// A PostgreSQL server child for one test, stopped (immediately) on drop.
#[derive(Debug)]
pub struct PostgresServer {
    /// Where `initdb`, `pg_ctl` live (empty: from `PATH`).
    bin_dir: PathBuf,
    /// `Some((uid, gid))` when commands must drop root.
    run_as: Option<(u32, u32)>,
    port: u16,
    /// Holds the data folder, the socket and the log.
    dir: tempfile::TempDir,
    running: bool,
}

impl PostgresServer {
    /// `initdb` a fresh cluster and start it on a free port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let run_as = running_as_root().then(unprivileged_account);
        if let Some((uid, gid)) = run_as {
            // The temp dir is root's and 0700: hand it over.
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let mut server = Self {
            bin_dir: bin_dir(),
            run_as,
            port: free_port(),
            dir,
            running: false,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        server.start_again();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's own log (`pg_ctl -l`).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `postgres://postgres@127.0.0.1:<port>`: append `/<database>`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Start it (again) on the same port and data, and wait until it
    /// accepts connections.
    pub fn start_again(&mut self) {
        if self.running {
            return;
        }
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let (data, log) = (self.data(), self.log());
        self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        );
        self.running = true;
    }

    /// Stop it the way an operator restarting it would (`-m fast`: open
    /// connections are cut, open transactions roll back, commits stay).
    pub fn stop(&mut self) {
        self.pg_stop("fast");
    }

    /// Crash it (`-m immediate`: no shutdown checkpoint; recovery replays
    /// the WAL at the next start).
    pub fn crash(&mut self) {
        self.pg_stop("immediate");
    }

    fn pg_stop(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-w".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
            ],
        );
        self.running = false;
    }

    /// Stop (fast) and start again.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// A server binary, run as the unprivileged account when we are root.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin_dir.join(tool);
        match self.run_as {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Run one server binary to completion (as the unprivileged account
    /// when we are root); panics with its output when it fails.
    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) {
        // pg_ctl start leaves the server running with our stdout: give it none.
        let out = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool} (is PostgreSQL installed?): {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}\n(server log: {})",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-w", "-m", "immediate", "-D"])
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Whether this process runs as root (who owns `/proc/self`).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `(uid, gid)` of the account PostgreSQL runs as when we are root.
fn unprivileged_account() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
    };
    let wanted = std::env::var("TEST_POSTGRES_OS_USER").ok();
    let names: Vec<&str> = wanted
        .as_deref()
        .into_iter()
        .chain(["postgres", "nobody"])
        .collect();
    for name in names {
        if let Some((Some(uid), Some(gid))) = find(name) {
            return (uid, gid);
        }
    }
    panic!("no unprivileged account to run PostgreSQL as (set TEST_POSTGRES_OS_USER)")
}

/// Where the server binaries are.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TEST_POSTGRES_BIN_DIR") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| Path::new(p).join("pg_ctl").is_file())
        .collect();
    // Newest major version last (numeric: 9.6 < 15 < 16).
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_default()
}
