//! Real `sshd` nodes on loopback for integration tests and benchmarks.
//!
//! `TestCluster::start(n)` generates host and client keys, writes a known_hosts
//! file and an inventory (strict host-key checking), and starts `n` sshd
//! processes on free 127.0.0.1 ports, each node with its own workdir. Drop
//! stops exactly the processes it started (listener and session processes, by PID).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod data;

/// Bytes as text, invalid UTF-8 shown as U+FFFD: for asserting on output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Processes (not this one) whose command line contains `needle`, with that
/// command line (NULs as spaces): tests filter further and check by PID.
pub fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push((pid, cmd));
            }
        }
    }
    found
}

pub struct SshNode {
    pub name: String,
    pub port: u16,
    /// Private directory of this node's sshd (config, host key, log).
    pub dir: PathBuf,
    /// The node's distctl workdir (absolute).
    pub workdir: PathBuf,
    /// Lines added to this node's sshd_config.
    sshd_extra: String,
    child: Option<Child>,
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<SshNode>,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    inventory: PathBuf,
}

/// Path of the distctl binary under test.
pub fn distctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_distctl"))
}

fn keygen(path: &Path) {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "distctl-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (openssh-client) must be installed");
    assert!(st.success(), "ssh-keygen failed");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Options to vary a cluster before it starts.
#[derive(Clone, Default)]
pub struct ClusterOptions {
    /// Workdir per node index (default: `<dir>/<name>/work`).
    pub workdir: Option<fn(&Path, usize) -> PathBuf>,
    /// Extra lines appended to the generated inventory.
    pub inventory_extra: String,
}

impl TestCluster {
    pub fn start(n: usize) -> TestCluster {
        TestCluster::start_with(n, ClusterOptions::default())
    }

    pub fn start_with(n: usize, opts: ClusterOptions) -> TestCluster {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing: install openssh-server (scripts/install-deps does)"
        );
        if current_user() == "root" {
            // sshd refuses to start as root without its privilege separation directory.
            let _ = fs::create_dir_all("/run/sshd");
        }
        let dir = tempfile::Builder::new()
            .prefix("dctl-test")
            .tempdir()
            .unwrap();
        let client_key = dir.path().join("client_key");
        keygen(&client_key);
        let authorized = dir.path().join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
        let known_hosts = dir.path().join("known_hosts");
        let mut cluster = TestCluster {
            inventory: dir.path().join("cluster.toml"),
            client_key,
            known_hosts,
            nodes: Vec::new(),
            dir,
        };
        for i in 0..n {
            let name = format!("node{}", i + 1);
            let ndir = cluster.dir.path().join(&name);
            fs::create_dir_all(&ndir).unwrap();
            let workdir = match opts.workdir {
                Some(f) => f(cluster.dir.path(), i),
                None => ndir.join("work"),
            };
            keygen(&ndir.join("host_ed25519"));
            cluster.nodes.push(SshNode {
                name,
                port: 0,
                dir: ndir,
                workdir,
                sshd_extra: String::new(),
                child: None,
            });
        }
        let authorized = cluster.dir.path().join("authorized_keys");
        std::thread::scope(|s| {
            for node in cluster.nodes.iter_mut() {
                let authorized = authorized.clone();
                s.spawn(move || start_sshd(node, &authorized));
            }
        });
        cluster.write_known_hosts();
        cluster.write_inventory(&opts.inventory_extra);
        cluster
    }

    pub fn inventory(&self) -> &Path {
        &self.inventory
    }

    /// Rewrite the inventory with extra TOML appended (e.g. more `[[nodes]]`).
    pub fn write_inventory(&self, extra: &str) {
        let mut s = String::new();
        s.push_str("[defaults]\nhost = \"127.0.0.1\"\n");
        s.push_str(&format!("user = {:?}\n", current_user()));
        s.push_str(&format!(
            "identity_file = {:?}\n",
            self.client_key.display().to_string()
        ));
        s.push_str(&format!(
            "known_hosts_file = {:?}\n",
            self.known_hosts.display().to_string()
        ));
        s.push_str("host_key_checking = \"strict\"\nconnect_timeout = \"5s\"\n");
        for node in &self.nodes {
            s.push_str(&format!(
                "\n[[nodes]]\nname = {:?}\nport = {}\nworkdir = {:?}\n",
                node.name,
                node.port,
                node.workdir.display().to_string()
            ));
        }
        s.push_str(extra);
        fs::write(&self.inventory, s).unwrap();
    }

    fn write_known_hosts(&self) {
        let mut f = fs::File::create(&self.known_hosts).unwrap();
        for node in &self.nodes {
            let key = fs::read_to_string(node.dir.join("host_ed25519.pub")).unwrap();
            let mut parts = key.split_whitespace();
            let (kind, blob) = (parts.next().unwrap(), parts.next().unwrap());
            writeln!(f, "[127.0.0.1]:{} {kind} {blob}", node.port).unwrap();
        }
    }

    /// `distctl --inventory <this cluster>`; add the command and its flags.
    pub fn distctl(&self) -> Command {
        let mut c = Command::new(distctl_bin());
        c.arg("--inventory").arg(&self.inventory);
        // Recorded outcomes (`--nodes @failed`) stay with this cluster.
        c.env("XDG_STATE_HOME", self.dir.path().join("state"));
        c.stdin(Stdio::null());
        c
    }

    /// Plain `ssh` to node `i` as the cluster's user, with its key and strict
    /// host-key checking against its known_hosts; add the remote command.
    pub fn ssh(&self, i: usize) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .args(["-o", "IdentitiesOnly=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg("-i")
            .arg(&self.client_key)
            .args(["-p", &self.nodes[i].port.to_string(), "-l", &current_user()])
            .arg("127.0.0.1")
            .stdin(Stdio::null());
        c
    }

    /// Put an executable `name` with `script` first in node `i`'s PATH (a
    /// hostile `tar`, `df`, `sha256sum`...): its sessions find it before the
    /// system's, from the next command on.
    pub fn node_tool(&self, i: usize, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let bin = self.nodes[i].dir.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let path = bin.join(name);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn workdir(&self, i: usize) -> &Path {
        &self.nodes[i].workdir
    }

    /// Give node N (1-based) a ProxyCommand that waits for `gate` to exist,
    /// then connects (`connects`) or fails; its `connect_timeout` outlasts
    /// any wait. It gives up when the gate's directory goes (the test ended).
    pub fn gate_nodes(&self, gated: &[(usize, &Path, bool)]) {
        let mut inventory = std::fs::read_to_string(self.inventory()).unwrap();
        for &(n, gate, connects) in gated {
            let then = if connects {
                "exec 3<>/dev/tcp/127.0.0.1/%p; cat <&3 & exec cat >&3"
            } else {
                "exit 1"
            };
            let proxy = format!(
                "ProxyCommand=bash -c 'while [ ! -e {} ]; do [ -d {} ] || exit 1; sleep 0.05; done; {then}'",
                gate.display(),
                gate.parent().unwrap().display()
            );
            inventory = inventory.replace(
                &format!("name = \"node{n}\"\n"),
                &format!(
                    "name = \"node{n}\"\nconnect_timeout = \"60s\"\nssh_options = [{proxy:?}]\n"
                ),
            );
        }
        std::fs::write(self.inventory(), inventory).unwrap();
    }

    /// Put node N (1-based) `delay` milliseconds away each way: its
    /// connection goes through [`DELAY_RELAY`], under a host name that is
    /// not this machine's (`nodeN.far.invalid`; the host key is still
    /// checked, as 127.0.0.1's).
    pub fn delay_nodes(&self, delayed: &[(usize, u32)]) {
        self.delay_nodes_slow_start(delayed, (0, 0));
    }

    /// [`TestCluster::delay_nodes`], each connection's first `slow.0` bytes
    /// towards the node passed on at `slow.1` bytes a second: a link that
    /// something else holds back at first.
    pub fn delay_nodes_slow_start(&self, delayed: &[(usize, u32)], slow: (u64, u64)) {
        assert!(slow.0 == 0 || slow.1 > 0, "a slow start needs a rate");
        let relay = self.dir.path().join("delay-relay.py");
        fs::write(&relay, DELAY_RELAY).unwrap();
        let mut inventory = fs::read_to_string(self.inventory()).unwrap();
        let (slow_bytes, slow_rate) = slow;
        for &(n, delay) in delayed {
            let proxy = format!(
                "ProxyCommand=python3 {} 127.0.0.1 %p {delay} {slow_bytes} {slow_rate}",
                relay.display()
            );
            let alias = format!("HostKeyAlias=[127.0.0.1]:{}", self.nodes[n - 1].port);
            inventory = inventory.replace(
                &format!("name = \"node{n}\"\n"),
                &format!(
                    "name = \"node{n}\"\nhost = \"node{n}.far.invalid\"\nssh_options = [{proxy:?}, {alias:?}]\n"
                ),
            );
        }
        fs::write(self.inventory(), inventory).unwrap();
    }

    /// An ssh config `Host` block naming node `i` (0-based) `node{i+1}`,
    /// for the tools the benchmarks compare (ssh, scp, GNU parallel).
    pub fn ssh_host_block(&self, i: usize) -> String {
        format!(
            "Host node{}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
            i + 1,
            self.nodes[i].port,
            current_user(),
            self.client_key.display(),
            self.known_hosts.display()
        )
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// The controller's ssh client processes (masters and their mux clients)
    /// connected to any node of this cluster: `ssh … -p PORT …`, by PID.
    #[allow(dead_code)]
    pub fn ssh_clients(&self) -> Vec<u32> {
        let ports: Vec<String> = self.nodes.iter().map(|n| n.port.to_string()).collect();
        let mut found = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmd
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_ssh = args
                .first()
                .is_some_and(|a| a == "ssh" || a.ends_with("/ssh"));
            let to_us = args
                .windows(2)
                .any(|w| w[0] == "-p" && ports.contains(&w[1]));
            if is_ssh && to_us {
                found.push(pid);
            }
        }
        found
    }

    /// The sshd listener of node `i` and every process below it (its
    /// connections' session processes and what they run).
    pub fn node_pids(&self, i: usize) -> Vec<u32> {
        match &self.nodes[i].child {
            Some(c) => process_tree(c.id()),
            None => Vec::new(),
        }
    }

    /// Kill node `i` outright: the listener and all its session processes,
    /// so established connections die too (killing only the listener would not).
    pub fn stop_node(&mut self, i: usize) {
        stop(&mut self.nodes[i]);
    }

    /// Start node `i` again on the same port with the same host key.
    pub fn restart_node(&mut self, i: usize) {
        stop(&mut self.nodes[i]);
        let authorized = self.dir.path().join("authorized_keys");
        start_sshd(&mut self.nodes[i], &authorized);
    }

    /// Restart node `i` with `lines` added to its sshd_config.
    pub fn restart_node_with(&mut self, i: usize, lines: &str) {
        self.nodes[i].sshd_extra = lines.to_string();
        self.restart_node(i);
    }

    /// Give node `i` a new host key and restart it (known_hosts keeps the old one).
    pub fn rekey_node(&mut self, i: usize) {
        stop(&mut self.nodes[i]);
        keygen(&self.nodes[i].dir.join("host_ed25519"));
        let authorized = self.dir.path().join("authorized_keys");
        start_sshd(&mut self.nodes[i], &authorized);
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            stop(node);
        }
    }
}

/// `PATH` starts with the node's own `bin/` (empty unless a test puts a hostile
/// tool there with [`TestCluster::node_tool`]).
/// `SetEnv SHLVL=1`: Debian's bash sources `~/.bashrc` for every command sshd
/// runs, unless it is a nested shell. The test nodes log in as the local user,
/// whose `.bashrc` may be slow or fragile (pyenv's `rehash`, killed mid-way
/// with a node, leaves a lock that stalls every later login for 60 s); real
/// nodes keep their own behaviour.
fn sshd_config(node: &SshNode, authorized: &Path) -> String {
    format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_ed25519\nPidFile {dir}/sshd.pid\n\
         AuthorizedKeysFile {auth}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
         PrintMotd no\nLogLevel ERROR\nMaxStartups 100:30:200\nSubsystem sftp internal-sftp\n\
         SetEnv SHLVL=1 PATH={dir}/bin:/usr/local/bin:/usr/bin:/bin:/usr/games\n{extra}",
        extra = node.sshd_extra,
        port = node.port,
        dir = node.dir.display(),
        auth = authorized.display(),
    )
}

fn start_sshd(node: &mut SshNode, authorized: &Path) {
    let keep_port = node.port != 0;
    for _attempt in 0..20 {
        if !keep_port {
            node.port = free_port();
        }
        let config = node.dir.join("sshd_config");
        fs::write(&config, sshd_config(node, authorized)).unwrap();
        let log = fs::File::create(node.dir.join("sshd.log")).unwrap();
        let pidfile = node.dir.join("sshd.pid");
        let _ = fs::remove_file(&pidfile);
        let mut child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start /usr/sbin/sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // exited: port taken or bad config; retry
            }
            // sshd writes its PidFile only once it listens. A connect alone
            // can be answered by someone else who took the port (another
            // test's sshd that later stops), or by the socket itself (TCP
            // self-connect to a free port of the ephemeral range).
            let ours =
                fs::read_to_string(&pidfile).is_ok_and(|p| p.trim() == child.id().to_string());
            if ours && TcpStream::connect(("127.0.0.1", node.port)).is_ok() {
                node.child = Some(child);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        if keep_port {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    panic!(
        "sshd for {} did not start; log: {}",
        node.name,
        fs::read_to_string(node.dir.join("sshd.log")).unwrap_or_default()
    );
}

fn stop(node: &mut SshNode) {
    if let Some(mut child) = node.child.take() {
        // Collect the whole tree first: once a parent dies its children are
        // re-parented and could no longer be found.
        for pid in process_tree(child.id()) {
            kill(pid);
        }
        let _ = child.wait();
    }
}

fn kill(pid: u32) {
    // SAFETY: plain kill(2) on a PID this cluster started (or its descendant).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// `root` and all its descendants, from /proc (parents before children).
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The command name may hold spaces and parentheses: parse after the last ')'.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                continue;
            };
            if let Some(ppid) = rest.split(' ').nth(1).and_then(|p| p.parse().ok()) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// Whether process `pid` still runs: a zombie waiting for its parent (or
/// init) to reap it has exited.
#[allow(dead_code)]
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The command name may hold spaces and parentheses: the state
        // follows the last ')'.
        Ok(stat) => !matches!(
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next()),
            Some("Z" | "X") | None
        ),
    }
}

/// Wait until `cond` holds, polling, for at most `limit`.
#[allow(dead_code)]
pub fn wait_until(what: &str, limit: std::time::Duration, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// distctl on its built-in local node, away from any inventory: run in `dir`
/// with `HOME` there and no `$DISTCTL_INVENTORY`.
#[allow(dead_code)]
pub fn local_distctl(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(distctl_bin())
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("XDG_STATE_HOME")
        .env_remove("DISTCTL_INVENTORY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub mod metrics_csv;
pub mod pty;

/// stdin/stdout <-> host:port, every read passed on `delay` ms later: run
/// as a `ProxyCommand`, it puts a node that far away (this kernel has no
/// `netem`). Nothing is held back: it buffers whatever is in flight. With
/// `SLOW_BYTES SLOW_RATE` after the delay, the first bytes towards the node
/// are read no faster than that rate.
pub const DELAY_RELAY: &str = r#"import asyncio, os, sys, time
host, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) / 1000
slow_bytes, slow_rate = (int(a) for a in (sys.argv[4:6] if len(sys.argv) > 5 else (0, 0)))

async def pump(read, write, slow=0):
    q = asyncio.Queue()
    async def reader():
        passed = 0
        while True:
            data = await read(1 << 16 if passed < slow else 1 << 20)
            if passed < slow and data:
                await asyncio.sleep(len(data) / slow_rate)
            passed += len(data)
            await q.put((time.monotonic() + delay, data))
            if not data:
                return
    task = asyncio.create_task(reader())
    while True:
        due, data = await q.get()
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if not data:
            return
        await write(data)

async def main():
    loop = asyncio.get_running_loop()
    sock_r, sock_w = await asyncio.open_connection(host, port)
    stdin = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), os.fdopen(0, "rb", 0))
    t, p = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, os.fdopen(1, "wb", 0))
    stdout = asyncio.StreamWriter(t, p, None, loop)
    async def to_sock(d):
        sock_w.write(d)
        await sock_w.drain()
    async def to_out(d):
        stdout.write(d)
        await stdout.drain()
    up = asyncio.create_task(pump(stdin.read, to_sock, slow_bytes))
    down = asyncio.create_task(pump(sock_r.read, to_out))
    done, _ = await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
    if up in done:
        sock_w.write_eof()
        await down
    os._exit(0)

asyncio.run(main())
"#;
