//! A real SMTP server for tests: Python's `aiosmtpd` on a free port,
//! storing every message it accepts in a temporary Maildir.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{eventually, free_port, kill, spawn_listening};

const MISSING: &str =
    "aiosmtpd is missing: `make test` installs it (python3 -m pip install aiosmtpd)";

/// An `aiosmtpd` child process for one test, killed on drop. Plain SMTP,
/// no authentication; it accepts every message for every recipient.
#[derive(Debug)]
pub struct SmtpServer {
    python: String,
    port: u16,
    maildir: tempfile::TempDir,
    child: Option<Child>,
}

impl SmtpServer {
    /// Start `aiosmtpd` (with `PYTHON`, default `python3`) on a free port.
    /// Panics with an install hint when the module is missing.
    pub fn start() -> Self {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let present = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(present, "{MISSING}");
        let mut server = Self {
            python,
            port: free_port(),
            maildir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.python);
        // -n: do not try to drop privileges; the Mailbox handler appends
        // each message (with X-MailFrom / X-RcptTo headers) to a Maildir.
        cmd.args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(self.maildir());
        self.child = Some(spawn_listening(cmd, "aiosmtpd", MISSING, self.port));
    }

    /// Python's `mailbox.Maildir` creates its `tmp`/`new`/`cur` folders
    /// only when the Maildir itself does not exist yet: a fresh subfolder.
    fn maildir(&self) -> PathBuf {
        self.maildir.path().join("Maildir")
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>?tls=none`: jetshop's notation for a plain,
    /// local SMTP server (see the notifications settings).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// Kill the server (an outage); the messages it stored stay.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Start it again on the same port and Maildir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Every message received so far, as raw RFC 5322 text, oldest first
    /// (Maildir names start with the delivery time).
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.maildir().join(sub)).ok())
            .flatten()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort_by_key(|p| p.file_name().map(|n| n.to_owned()));
        files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect()
    }

    /// Wait (up to 15 s) until at least `n` messages arrived; return them all.
    pub async fn wait_for_messages(&self, n: usize) -> Vec<String> {
        eventually(
            &format!("{n} messages at the SMTP server"),
            Duration::from_secs(15),
            || async move {
                let all = self.messages();
                (all.len() >= n).then_some(all)
            },
        )
        .await
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
