//! A real 3-node etcd cluster (Debian's `etcd-server`) with mutual TLS on loopback, for the
//! fleet tests: certificates made with openssl per cluster, free ports picked per node, data on
//! a private directory, every node killed when the cluster is dropped (and, if the test
//! process dies, by the kernel: `setpriv --pdeathsig KILL`).
//!
//! Nothing listens outside 127.0.0.1.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One etcd node.
struct Node {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A running cluster.
pub struct Cluster {
    /// Certificates, data directories, logs.
    pub dir: PathBuf,
    nodes: Vec<Node>,
    token: String,
    /// Extra etcd flags for every node ([`Cluster::start_with`]).
    extra: Vec<String>,
}

/// The files a host (or an administrator) uses to reach the cluster.
pub struct ClientFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Fails the test unless etcd and openssl are installed.
pub fn require_etcd() {
    for (path, package) in [
        ("/usr/bin/etcd", "etcd-server"),
        ("/usr/bin/etcdctl", "etcd-client"),
        ("/usr/bin/openssl", "openssl"),
        ("/usr/bin/setpriv", "util-linux"),
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: apt-get install {package} (scripts/deps does this)"
        );
    }
}

/// A loopback port no other node of this test process was given. The kernel may hand a port
/// that was just released to the next `bind(0)` (seen: two nodes of one cluster got the same
/// port and one could not listen), so every port given out is remembered for the process.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command runs");
    super::assert_ok(&out, &format!("{cmd:?}"));
    out
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").args(args).current_dir(dir));
}

/// A new EC P-256 private key (PKCS#8) in `dir/file`.
fn ec_key(dir: &Path, file: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            file,
        ],
    );
}

/// An EC P-256 key (PKCS#8, `0600`) and a certificate signed by the CA in `dir`
/// (`NAME.key`, `NAME.pem`).
pub fn issue(dir: &Path, name: &str, subject: &str, ext: &str) {
    ec_key(dir, &format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    std::fs::set_permissions(
        dir.join(format!("{name}.key")),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

/// A CA with its key in `dir` (`ca.pem`, `ca.key`).
pub fn make_ca(dir: &Path, cn: &str) {
    std::fs::create_dir_all(dir).unwrap();
    ec_key(dir, "ca.key");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "2",
            "-out",
            "ca.pem",
        ],
    );
}

impl Cluster {
    /// Generates certificates and starts three nodes; returns once all three are healthy.
    pub fn start(tag: &str) -> Self {
        Self::start_with(tag, &[])
    }

    /// Like [`Cluster::start`], every node started with these extra flags as well (e.g.
    /// `--quota-backend-bytes=…`, `--auto-compaction-mode=…`, `--auto-compaction-retention=…`).
    pub fn start_with(tag: &str, flags: &[&str]) -> Self {
        require_etcd();
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ecs-mfa-etcd-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        make_ca(&dir, "ecs-mfa test etcd CA");
        // Servers and peers: SAN 127.0.0.1, both usages (etcd uses it as a peer client too).
        issue(
            &dir,
            "server",
            "/CN=etcd",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        // Hosts and administrators: no CN (etcd's gateway refuses client certificates with one
        // once RBAC is on; the user comes from the token).
        issue(&dir, "host", "/O=ecs-mfa", "extendedKeyUsage=clientAuth\n");
        issue(
            &dir,
            "admin",
            "/O=ecs-mfa-admin",
            "extendedKeyUsage=clientAuth\n",
        );
        let nodes = (1..=3)
            .map(|i| Node {
                name: format!("n{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            token: format!("ecs-mfa-{}", dir.file_name().unwrap().to_string_lossy()),
            dir,
            nodes,
            extra: flags.iter().map(|f| f.to_string()).collect(),
        };
        for i in 0..3 {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy(&[0, 1, 2]);
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}=https://127.0.0.1:{}", n.name, n.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial = self.initial_cluster();
        let dir = self.dir.clone();
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(dir.join(format!("{}.log", node.name))).unwrap();
        let tls = |flag: &str, file: &str| format!("--{flag}={}", dir.join(file).display());
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "etcd"])
            .arg(format!("--name={}", node.name))
            .arg(format!(
                "--data-dir={}",
                dir.join(format!("{}.data", node.name)).display()
            ))
            .arg(format!(
                "--listen-client-urls=https://127.0.0.1:{}",
                node.client_port
            ))
            .arg(format!(
                "--advertise-client-urls=https://127.0.0.1:{}",
                node.client_port
            ))
            .arg(format!(
                "--listen-peer-urls=https://127.0.0.1:{}",
                node.peer_port
            ))
            .arg(format!(
                "--initial-advertise-peer-urls=https://127.0.0.1:{}",
                node.peer_port
            ))
            .arg(format!("--initial-cluster={initial}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg(tls("cert-file", "server.pem"))
            .arg(tls("key-file", "server.key"))
            .arg(tls("trusted-ca-file", "ca.pem"))
            .arg("--client-cert-auth")
            .arg(tls("peer-cert-file", "server.pem"))
            .arg(tls("peer-key-file", "server.key"))
            .arg(tls("peer-trusted-ca-file", "ca.pem"))
            .arg("--peer-client-cert-auth")
            .arg("--log-level=warn")
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        node.child = Some(child);
    }

    /// The client URLs of all three nodes.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("https://127.0.0.1:{}", n.client_port))
            .collect()
    }

    /// Client files for a host.
    pub fn host_files(&self) -> ClientFiles {
        ClientFiles {
            ca: self.dir.join("ca.pem"),
            cert: self.dir.join("host.pem"),
            key: self.dir.join("host.key"),
        }
    }

    /// Client files for an administrator.
    pub fn admin_files(&self) -> ClientFiles {
        ClientFiles {
            ca: self.dir.join("ca.pem"),
            cert: self.dir.join("admin.pem"),
            key: self.dir.join("admin.key"),
        }
    }

    /// etcdctl for `endpoints`, with the CA and the administrator's client certificate.
    fn etcdctl_at(&self, endpoints: &[String]) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg(format!("--cacert={}", self.dir.join("ca.pem").display()))
            .arg(format!("--cert={}", self.dir.join("admin.pem").display()))
            .arg(format!("--key={}", self.dir.join("admin.key").display()));
        cmd
    }

    /// Runs etcdctl against the live nodes (as `root` with `password` when RBAC is on).
    pub fn etcdctl(&self, user: Option<&str>, args: &[&str]) -> Output {
        let live: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("https://127.0.0.1:{}", n.client_port))
            .collect();
        let mut cmd = self.etcdctl_at(&live);
        cmd.arg("--command-timeout=10s");
        if let Some(user) = user {
            cmd.arg(format!("--user={user}"));
        }
        cmd.args(args).output().expect("etcdctl runs")
    }

    /// etcdctl that must succeed; its stdout.
    pub fn ctl(&self, user: Option<&str>, args: &[&str]) -> String {
        let out = self.etcdctl(user, args);
        super::assert_ok(&out, &format!("etcdctl {args:?}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (up to 60 s) until etcdctl endpoint health passes on these nodes (a leader exists).
    pub fn wait_healthy(&self, nodes: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let endpoints: Vec<String> = nodes
                .iter()
                .map(|&i| format!("https://127.0.0.1:{}", self.nodes[i].client_port))
                .collect();
            let out = self
                .etcdctl_at(&endpoints)
                .args(["endpoint", "health", "--command-timeout=2s"])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd cluster not healthy after 60 s: {}\nlogs in {}",
                String::from_utf8_lossy(&out.stderr),
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills node `i` (SIGKILL, as a crash).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again with its data, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
        let live: Vec<usize> = (0..3).filter(|&n| self.nodes[n].child.is_some()).collect();
        self.wait_healthy(&live);
    }

    /// Turns on RBAC: `root` (password `rootpw`), role `ecs-mfa-host` (read records, read-write
    /// state under `prefix`) for user `host` (password `hostpw`), role `ecs-mfa-admin`
    /// (read-write everything under `prefix`) for user `admin` (password `adminpw`). The
    /// commands are the ones docs/fleet.md gives.
    pub fn enable_rbac(&self, prefix: &str) {
        let records = format!("{prefix}records/");
        let state = format!("{prefix}state/");
        for args in [
            vec!["user", "add", "root:rootpw"],
            vec!["role", "add", "ecs-mfa-host"],
            vec![
                "role",
                "grant-permission",
                "ecs-mfa-host",
                "--prefix=true",
                "read",
                &records,
            ],
            vec![
                "role",
                "grant-permission",
                "ecs-mfa-host",
                "--prefix=true",
                "readwrite",
                &state,
            ],
            vec!["role", "add", "ecs-mfa-admin"],
            vec![
                "role",
                "grant-permission",
                "ecs-mfa-admin",
                "--prefix=true",
                "readwrite",
                prefix,
            ],
            vec!["user", "add", "host:hostpw"],
            vec!["user", "grant-role", "host", "ecs-mfa-host"],
            vec!["user", "add", "admin:adminpw"],
            vec!["user", "grant-role", "admin", "ecs-mfa-admin"],
            vec!["auth", "enable"],
        ] {
            self.ctl(None, &args);
        }
    }

    /// The environment that makes a plain `etcdctl` reach the live nodes as the administrator
    /// (`ETCDCTL_API`, `ETCDCTL_ENDPOINTS`, `ETCDCTL_CACERT`, `ETCDCTL_CERT`, `ETCDCTL_KEY`):
    /// for running shell commands from the docs as written.
    pub fn etcdctl_env(&self) -> Vec<(String, String)> {
        let live: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("https://127.0.0.1:{}", n.client_port))
            .collect();
        let file = |name: &str| self.dir.join(name).display().to_string();
        vec![
            ("ETCDCTL_API".into(), "3".into()),
            ("ETCDCTL_ENDPOINTS".into(), live.join(",")),
            ("ETCDCTL_CACERT".into(), file("ca.pem")),
            ("ETCDCTL_CERT".into(), file("admin.pem")),
            ("ETCDCTL_KEY".into(), file("admin.key")),
        ]
    }

    /// `etcdctl snapshot save` from node 0; the snapshot's bytes.
    pub fn snapshot(&self, user: Option<&str>) -> Vec<u8> {
        let path = self.dir.join("snapshot.db");
        let endpoint = format!("https://127.0.0.1:{}", self.nodes[0].client_port);
        let out = self
            .etcdctl_at(&[endpoint])
            .args(user.map(|u| format!("--user={u}")))
            .arg("snapshot")
            .arg("save")
            .arg(&path)
            .output()
            .unwrap();
        super::assert_ok(&out, "etcdctl snapshot save");
        std::fs::read(&path).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// Appended for tests/fleet_faults.rs (issue 23): a node that hangs instead of dying.
impl Cluster {
    /// Stops node `i` with SIGSTOP: its port still accepts TCP connections (the kernel's
    /// backlog) but nothing answers, as with a hung process or a blackholed address.
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// Resumes node `i` (SIGCONT) and waits until all three nodes are healthy.
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
        self.wait_healthy(&[0, 1, 2]);
    }

    /// Resumes several stopped nodes and waits until all three are healthy.
    pub fn resume_all(&self, nodes: &[usize]) {
        for &i in nodes {
            self.signal(i, "-CONT");
        }
        self.wait_healthy(&[0, 1, 2]);
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].child.as_ref().expect("node running").id();
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    }
}
