//! A Linux network namespace with one veth pair to the host, so a test can
//! cut one process (a NATS node) off the network and plug it back in: a
//! real partition, where packets are lost rather than refused, which
//! neither SIGKILL nor SIGSTOP can imitate (the peers' TCP connections stay
//! open and only their pings notice).
//!
//! Each namespace gets a /30 of `10.213.0.0/16`: the host side of the pair
//! is `.1`, the namespace side `.2`, so the addresses exist only on this
//! machine. [`NetNamespace::partition`] takes the namespace side of the
//! pair down and [`NetNamespace::heal`] brings it up again; the host side
//! stays up, so the host keeps its `.1` address (processes on the host may
//! listen on it) while the link has no carrier.
//!
//! Needs root (`ip netns`, `ip link`). Names are unique per process and
//! per namespace: the namespace is `jetshop-<pid>-<n>`, and the /30 is
//! claimed by creating the host-side interface `jsh<index>`, which the
//! kernel refuses if another test holds that index. Dropping the value
//! deletes the namespace, and with it the veth pair; namespaces left by a
//! crashed test (whose pid is gone) are deleted by the next one.

use std::{
    net::Ipv4Addr,
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

/// Prefix of the namespaces this module creates (and may clean up).
const PREFIX: &str = "jetshop-";
/// How many /30 subnets fit in `10.213.0.0/16`.
const SUBNETS: u32 = 1 << 14;

/// A network namespace joined to the host by a veth pair, deleted on drop.
#[derive(Debug)]
pub struct NetNamespace {
    /// The namespace's name, for `ip netns exec`.
    name: String,
    /// The namespace side of the veth pair (taken down to partition).
    inner_link: String,
    /// The host's address on the pair.
    host: Ipv4Addr,
    /// The namespace's address on the pair.
    addr: Ipv4Addr,
}

impl NetNamespace {
    /// Create a namespace with its loopback up and a veth pair to the host,
    /// each side addressed and up.
    pub fn create() -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        remove_stale();
        let pid = std::process::id();
        let name = format!("{PREFIX}{pid}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name]);
        let mut ns = Self {
            name,
            inner_link: String::new(),
            host: Ipv4Addr::UNSPECIFIED,
            addr: Ipv4Addr::UNSPECIFIED,
        };
        // Claim a /30: the kernel refuses a host interface name in use.
        let index = (0..SUBNETS)
            .map(|k| (pid + k) % SUBNETS)
            .find(|&index| {
                Command::new("ip")
                    .args(["link", "add", &format!("jsh{index}"), "type", "veth"])
                    .args(["peer", "name", &format!("jsn{index}"), "netns", &ns.name])
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("a free /30 in 10.213.0.0/16");
        let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + index * 4;
        (ns.host, ns.addr) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        ns.inner_link = format!("jsn{index}");
        let outer = format!("jsh{index}");
        ip(&["addr", "add", &format!("{}/30", ns.host), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.addr),
            "dev",
            &ns.inner_link,
        ]);
        ns.ip(&["link", "set", &ns.inner_link, "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Whether this machine lets the test create namespaces (root and
    /// iproute2): tried, by adding and deleting one.
    pub fn supported() -> bool {
        let probe = format!("{PREFIX}{}-probe", std::process::id());
        let added = Command::new("ip")
            .args(["netns", "add", &probe])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if added {
            let _ = Command::new("ip").args(["netns", "del", &probe]).status();
        }
        added
    }

    /// The namespace's address: what a process inside listens on.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The host's address on the pair: the only host address the namespace
    /// reaches, so a host process the namespace must call listens on it.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host
    }

    /// A command that runs `program` inside the namespace
    /// (`ip netns exec`, which execs it: the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Cut the namespace off: its side of the pair goes down, so packets
    /// either way are lost (no reset, no refusal) until [`Self::heal`].
    pub fn partition(&self) {
        self.ip(&["link", "set", &self.inner_link, "down"]);
    }

    /// Plug the namespace back in after [`Self::partition`].
    pub fn heal(&self) {
        self.ip(&["link", "set", &self.inner_link, "up"]);
    }

    /// Run `ip <args>` inside the namespace.
    fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full);
    }
}

impl Drop for NetNamespace {
    fn drop(&mut self) {
        // Deleting the namespace destroys the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Run `ip <args>`, panicking if it fails.
fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        status.success(),
        "ip {} failed (network namespaces need root)",
        args.join(" ")
    );
}

/// Delete namespaces of ours whose test process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `name` or `name (id: N)`.
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
