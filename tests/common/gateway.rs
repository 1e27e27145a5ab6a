//! The hostile TLS gateway of the fleet tests: where a real etcd cannot misbehave (hang in the
//! middle of an answer, answer too much, lose every compare), a python3 `ssl` server holding a
//! certificate from the cluster's CA stands between a host and one real node, on 127.0.0.1.
//! Used by `tests/fleet_faults.rs` (deadlines and memory under a hostile peer) and
//! `tests/attack_fleet.rs` (a slow but faithful network).

use std::io::{BufRead, Read};
use std::process::{Child, Command, Stdio};

use super::etcd::{Cluster, issue};

/// The gateway (python3's ssl): listens on 127.0.0.1:PORT with a certificate from the cluster's
/// CA and answers every request as MODE says; `T` is in milliseconds. `delay`, `slow`, `nocas`
/// and `dripcas` forward to a real node; the others never do.
/// - `delay`: a faithful answer, whole, `T` after the node gave it (one connection per request:
///   `Connection: close`); prints `request PATH` for each one answered.
/// - `slow` (`T` the client's timeout_ms; each phase 0.9 T: a client with a timeout per phase
///   finishes each step after 2.65 T, 5.3 T per login) and `nocas` (each lost compare answered
///   after 0.6 T: 8 retries are 4.8 T) held logins 4.8 s and 27.6 s before issue 23.
/// - `silent` (never completes the handshake), `never` (never answers), `huge`, `wide`,
///   `deep` (answers too big or too nested), `dripcas` (compare answers one byte at a time).
///
/// It exits by itself after LIFE seconds (0: never), and with the test process (pdeathsig).
const GATEWAY: &str = r#"
import http.client, json, socket, ssl, sys, threading, time
mode, port, cert, key, ca, upstream, t, life = sys.argv[1:9]
t = int(t) / 1000.0
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(cert, key)
server.load_verify_locations(ca)
server.verify_mode = ssl.CERT_REQUIRED
client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client.load_cert_chain(cert, key)
client.load_verify_locations(ca)

def request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    path = lines[0].split(" ")[1]
    headers = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        body += conn.recv(4096)
    return path, body, headers

def head(status, length):
    return ("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (status, length)).encode()

def forward(path, body, headers):
    host, p = upstream.rsplit(":", 1)
    up = http.client.HTTPSConnection(host, int(p), context=client, timeout=10)
    h = {"Content-Type": "application/json"}
    if "authorization" in headers:
        h["Authorization"] = headers["authorization"]
    up.request("POST", path, body, h)
    r = up.getresponse()
    return r.status, r.read()

def handle(raw):
    try:
        if mode == "silent":
            time.sleep(3600)
        if mode == "slow":
            time.sleep(0.9 * t)
        conn = server.wrap_socket(raw, server_side=True)
        path, body, headers = request(conn)
        if mode == "never":
            time.sleep(3600)
        elif mode == "delay":
            # A faithful answer, whole, T after the node gave it; the path is reported.
            status, answer = forward(path, body, headers)
            time.sleep(t)
            conn.sendall(head(status, len(answer)) + answer)
            print("request", path, flush=True)
        elif mode == "slow":
            # A faithful answer, each phase just under the timeout: handshake, headers, body.
            status, answer = forward(path, body, headers)
            time.sleep(0.9 * t)
            conn.sendall(head(status, len(answer)))
            time.sleep(0.85 * t)
            conn.sendall(answer)
        elif mode == "huge":
            n = 16 << 20
            conn.sendall(head(200, n))
            conn.sendall(b"[")
            chunk = b"0," * 32768
            sent = 1
            while sent + len(chunk) < n - 2:
                conn.sendall(chunk)
                sent += len(chunk)
            conn.sendall(b"0," * ((n - 2 - sent) // 2) + b"0]")
        elif mode == "wide":
            answer = b"[" + b"0," * 450000 + b"0]"
            conn.sendall(head(200, len(answer)) + answer)
        elif mode == "deep":
            answer = b"[" * 400000 + b"]" * 400000
            conn.sendall(head(200, len(answer)) + answer)
        elif mode in ("nocas", "dripcas"):
            j = json.loads(body or b"{}")
            cas = path == "/v3/kv/txn" and j.get("compare")
            if cas and mode == "nocas":
                for c in j["compare"]:
                    c["mod_revision"] = str(int(c.get("mod_revision", "0")) + 1000000)
                body = json.dumps(j).encode()
            status, answer = forward(path, body, headers)
            if cas and mode == "nocas":
                time.sleep(0.6 * t)
            if cas and mode == "dripcas":
                conn.sendall(head(status, len(answer)))
                for b in answer:
                    conn.sendall(bytes([b]))
                    time.sleep(0.1)
            else:
                conn.sendall(head(status, len(answer)) + answer)
        conn.close()
    except Exception:
        pass

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(port)))
listener.listen(64)
listener.settimeout(0.2)
print("ready", flush=True)
end = time.time() + int(life)
while int(life) == 0 or time.time() < end:
    try:
        raw, _ = listener.accept()
    except socket.timeout:
        continue
    threading.Thread(target=handle, args=(raw,), daemon=True).start()
"#;

/// A running [`GATEWAY`], stopped by its PID when dropped.
pub struct Gateway {
    child: Child,
    /// `https://127.0.0.1:PORT`, for a host's `endpoints`.
    pub url: String,
}

impl Gateway {
    /// A gateway in front of the cluster's first node, until stopped or dropped.
    pub fn start(cluster: &Cluster, mode: &str, t_ms: u64) -> Self {
        Self::start_for(cluster, mode, t_ms, 0)
    }

    /// A gateway that also exits by itself after `life_secs` (0: never).
    pub fn start_for(cluster: &Cluster, mode: &str, t_ms: u64, life_secs: u64) -> Self {
        let dir = &cluster.dir;
        if !dir.join("gateway.pem").exists() {
            issue(
                dir,
                "gateway",
                "/CN=gateway",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
            );
            std::fs::write(dir.join("gateway.py"), GATEWAY).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let upstream = cluster.endpoints()[0]
            .trim_start_matches("https://")
            .to_string();
        let mut child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "python3"])
            .arg(dir.join("gateway.py"))
            .arg(mode)
            .arg(port.to_string())
            .arg(dir.join("gateway.pem"))
            .arg(dir.join("gateway.key"))
            .arg(dir.join("ca.pem"))
            .arg(upstream)
            .arg(t_ms.to_string())
            .arg(life_secs.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "gateway {mode} did not start");
        Self {
            child,
            url: format!("https://127.0.0.1:{port}"),
        }
    }

    /// Stops the gateway and returns the requests it reported (paths; mode `delay`).
    pub fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut out = String::new();
        let _ = self.child.stdout.take().unwrap().read_to_string(&mut out);
        out.lines()
            .filter_map(|l| l.strip_prefix("request "))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
