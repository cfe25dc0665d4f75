//! `distctl exec` against real sshd nodes on loopback: streaming, gathering,
//! JSON, files, stdin, awkward arguments, timeouts and exit codes.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::text;
use support::TestCluster;

fn exec(cluster: &TestCluster, args: &[&str]) -> Output {
    cluster
        .distctl()
        .arg("exec")
        .args(args)
        .output()
        .expect("cannot run distctl")
}

/// A shell snippet that is true on the node listening on `port` (sshd puts
/// the server port last in SSH_CONNECTION).
fn on_port(port: u16) -> String {
    format!("[ \"${{SSH_CONNECTION##* }}\" = {port} ]")
}

#[test]
fn streams_prefixed_lines_and_summarises_failed_and_unreachable_nodes() {
    let mut cluster = TestCluster::start(4);
    cluster.stop_node(3);
    let cmd = format!(
        "printf 'line one\\nline two\\n'; printf 'no newline'; if {}; then echo bad >&2; exit 3; fi",
        on_port(cluster.port(1))
    );
    let out = exec(&cluster, &["--", &cmd]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // Exit 4 (a command failed) wins over 1 (a node unreachable).
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    for n in ["node1", "node2", "node3"] {
        let mine: Vec<&str> = stdout.lines().filter(|l| l.starts_with(n)).collect();
        assert_eq!(
            mine,
            [
                format!("{n}: line one"),
                format!("{n}: line two"),
                format!("{n}: no newline")
            ],
            "{stdout}"
        );
    }
    assert!(!stdout.contains("node4"));
    assert!(stderr.contains("node2: bad\n"), "{stderr}");
    assert!(stderr.contains("distctl: node2: exit 3\n"), "{stderr}");
    assert!(
        stderr.contains("distctl: node4: unreachable: connection refused"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 of 4 node(s) failed; rerun on them with --nodes @failed (node[2,4])"),
        "{stderr}"
    );

    // The printed set is what --nodes takes: rerun there only.
    let out = exec(&cluster, &["--nodes", "node[2,4]", "--", "echo again"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "only the unreachable one fails now"
    );
    assert_eq!(text(&out.stdout), "node2: again\n");
}

#[test]
fn output_streams_while_slow_nodes_still_run_and_lines_never_mix() {
    let cluster = TestCluster::start(3);
    // node1 waits until the test has seen a line of output (or gives up
    // after 15 s); the others print 300 long lines each, in many writes.
    let go = cluster.dir.path().join("go");
    let cmd = format!(
        "if {}; then n=0; while [ ! -e {go} ] && [ $n -lt 300 ]; do sleep 0.05; n=$((n+1)); done; \
         [ -e {go} ] && echo released || echo gave up; fi; \
         i=0; while [ $i -lt 300 ]; do printf '%s' {a}; printf '%s\\n' {a}; i=$((i+1)); done",
        on_port(cluster.port(0)),
        go = go.display(),
        a = "a".repeat(500),
    );
    let mut child = cluster
        .distctl()
        .args(["exec", "--", &cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    std::fs::write(&go, "").unwrap();
    let mut all = vec![first];
    all.extend(lines.map(Result::unwrap));
    assert!(child.wait().unwrap().success());
    assert!(
        all.contains(&"node1: released".to_string()),
        "node1 gave up waiting: output is not streamed"
    );
    assert!(all[0].starts_with("node2: ") || all[0].starts_with("node3: "));
    assert_eq!(all.len(), 901);
    let whole = "a".repeat(1000);
    for l in all.iter().filter(|l| *l != "node1: released") {
        let (node, rest) = l.split_once(": ").unwrap();
        assert!(["node1", "node2", "node3"].contains(&node), "{l}");
        assert_eq!(rest, whole, "a line holds bytes of two nodes");
    }
}

#[test]
fn gather_folds_identical_output_with_equal_exit_codes() {
    let mut cluster = TestCluster::start(4);
    cluster.stop_node(3);
    let cmd = format!(
        "echo hello; echo note >&2; if {}; then exit 3; fi",
        on_port(cluster.port(1))
    );
    let out = exec(&cluster, &["--gather", "--", &cmd]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "---------------\nnode[1,3]\n---------------\nhello\n\
         ---------------\nnode2 (exit 3)\n---------------\nhello\n"
    );
    let stderr = text(&out.stderr);
    for n in ["node1", "node2", "node3"] {
        assert!(stderr.contains(&format!("{n}: note\n")), "{stderr}");
    }
    assert!(stderr.contains("node4: unreachable"), "{stderr}");
}

#[test]
fn awkward_arguments_arrive_unchanged() {
    let cluster = TestCluster::start(2);
    let words = [
        "a b",
        "it's",
        "$HOME",
        "a;b",
        "*",
        "\"q\"",
        "x  y",
        "`id`",
        "$(echo no)",
        "back\\slash",
        "",
    ];
    let mut args = vec!["--", "printf", "<%s>\\n"];
    args.extend(words);
    let out = exec(&cluster, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let expect: String = words.iter().map(|w| format!("node1: <{w}>\n")).collect();
    let got: String = text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("node1: "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(got, expect);

    // One argument is a command line for the node's shell, as with ssh.
    let out = exec(
        &cluster,
        &[
            "--",
            "x='two words'; echo \"$x\" | tr o 0; echo $((6*7)); echo 'a;b'",
        ],
    );
    assert_eq!(
        text(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("node2"))
            .collect::<Vec<_>>(),
        ["node2: tw0 w0rds", "node2: 42", "node2: a;b"]
    );
}

#[test]
fn json_outdir_and_stdin() {
    let mut cluster = TestCluster::start(3);
    cluster.stop_node(2);
    let mut child = cluster
        .distctl()
        .args([
            "--json",
            "exec",
            "--stdin",
            "--",
            "tr a-z A-Z; echo err >&2; exit 5",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello nodes\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in &rows[..2] {
        assert_eq!(row["outcome"], "failed");
        assert_eq!(row["exit_code"], 5);
        assert_eq!(row["stdout"], "HELLO NODES\n");
        assert_eq!(row["stderr"], "err\n");
        assert!(row["duration_ms"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(rows[2]["outcome"], "unreachable");
    assert!(rows[2]["error"].as_str().unwrap().contains("refused"));

    let dir = tempfile::tempdir().unwrap();
    let outdir = dir.path().join("out");
    let out = exec(
        &cluster,
        &[
            "--nodes",
            "node[1-2]",
            "--outdir",
            outdir.to_str().unwrap(),
            "--",
            "echo out; echo err >&2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for n in ["node1", "node2"] {
        assert_eq!(
            std::fs::read_to_string(outdir.join(format!("{n}.out"))).unwrap(),
            "out\n"
        );
        assert_eq!(
            std::fs::read_to_string(outdir.join(format!("{n}.err"))).unwrap(),
            "err\n"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&outdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["node1.err", "node1.out", "node2.err", "node2.out"]);
}

/// PIDs of the node-side processes carrying `marker` (not distctl itself).
fn remote_processes(marker: &str) -> Vec<u32> {
    support::processes_with(marker)
        .into_iter()
        .filter(|(_, cmd)| !cmd.contains("distctl"))
        .map(|(pid, _)| pid)
        .collect()
}

#[test]
fn timeout_kills_the_command_and_everything_it_started() {
    let cluster = TestCluster::start(2);
    // A background child, a foreground child, and on node2 a shell that
    // ignores TERM (its children inherit that): only KILL ends those.
    let cmd = format!(
        "if {}; then trap '' TERM; fi; sleep 4242.17 & sleep 4243.17; echo never",
        on_port(cluster.port(1))
    );
    let start = Instant::now();
    let out = cluster
        .distctl()
        .args(["--json", "exec", "--timeout", "1s", "--", &cmd])
        .output()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["outcome"], "timed-out", "{row}");
        assert_eq!(row["stdout"], "");
    }
    assert!(text(&out.stderr).contains("node[1-2]: timed out after 1s"));
    // Nothing of it is left running on either node.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = remote_processes("4242.17")
            .into_iter()
            .chain(remote_processes("4243.17"))
            .collect::<Vec<_>>();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left running after the timeout: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A command that finishes in time is not affected.
    let out = exec(&cluster, &["--timeout", "5s", "--", "echo", "quick"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).lines().count(), 2);
}

#[test]
fn interrupting_exec_kills_what_it_started_on_every_node() {
    signal_stops_exec_everywhere(libc::SIGINT, "426");
}

/// SIGTERM takes the same path as Ctrl-C: every process killed, no ssh left.
#[test]
fn sigterm_stops_exec_on_every_node() {
    signal_stops_exec_everywhere(libc::SIGTERM, "436");
}

fn signal_stops_exec_everywhere(sig: libc::c_int, tag: &str) {
    let cluster = TestCluster::start(2);
    // A background child, one in a session of its own, a foreground child.
    let child = cluster
        .distctl()
        .args([
            "exec",
            "--",
            &format!("sleep {tag}2.17 & setsid sleep {tag}3.17 & sleep {tag}4.17"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let markers = [2, 3, 4].map(|i| format!("{tag}{i}.17"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while markers.iter().any(|m| remote_processes(m).len() < 2) {
        assert!(Instant::now() < deadline, "the commands did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on the distctl child this test started.
    let masters = cluster.ssh_clients();
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    support::wait_until("the ssh masters to exit", Duration::from_secs(5), || {
        masters.iter().all(|p| !support::process_alive(*p))
    });
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("node[1-2]: interrupted"), "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = markers.iter().flat_map(|m| remote_processes(m)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left running: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_that_dies_mid_command_is_reported_and_the_others_finish() {
    let mut cluster = TestCluster::start(3);
    // The marker names this cluster's port: a sleeper left by another run of
    // this test can never be taken for this one's.
    let marker = format!("sleep 30.{}", cluster.port(1));
    let cmd = format!(
        "echo started; if {}; then {marker}; fi; sleep 2; echo done",
        on_port(cluster.port(1))
    );
    let child = cluster
        .distctl()
        .args(["--json", "exec", "--", &cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Every node's shell carries the marker in its command line; only node2
    // runs the sleep itself, so wait for that process, not any shell.
    let sleeping = || {
        support::processes_with(&marker)
            .iter()
            .any(|(_, cmd)| cmd.starts_with(&marker))
    };
    while !sleeping() {
        assert!(Instant::now() < deadline, "node2 did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.stop_node(1);
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["stdout"], "started\ndone\n");
    assert_eq!(rows[2]["stdout"], "started\ndone\n");
    assert_eq!(rows[1]["outcome"], "lost", "{}", rows[1]);

    // A command killed by a signal on a live connection is not a lost node.
    let out = cluster
        .distctl()
        .args(["--nodes", "node1", "--json", "exec", "--", "kill -9 $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["outcome"], "killed", "{}", rows[0]);
}

/// A low soft limit on file descriptors is raised to the hard one at start,
/// so many nodes × channels do not run out (seen by the command it runs on
/// the built-in local node, which inherits distctl's limits).
#[test]
fn the_descriptor_soft_limit_is_raised_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "ulimit -Sn 64 && exec {} exec --json -- sh -c 'ulimit -Sn; ulimit -Hn'",
        support::distctl_bin().display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env_remove("DISTCTL_INVENTORY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stdout = v[0]["stdout"].as_str().unwrap_or_default().to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{v}");
    assert_eq!(lines[0], lines[1], "soft limit raised to the hard one: {v}");
}

/// The command is exec's first positional, as with clush and pdsh: what
/// follows belongs to it, word for word; `--` still works. Usage mistakes
/// say what was meant.
#[test]
fn exec_takes_the_command_without_dashes_and_usage_errors_say_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::local_distctl(dir.path(), &["exec", "printf", "%s|", "a  b", "--gather"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "local: a  b|--gather|\n");
    let out = support::local_distctl(dir.path(), &["exec", "--", "echo", "-n", "x"]);
    assert_eq!(text(&out.stdout), "local: x\n");

    let out = support::local_distctl(dir.path(), &["--label", "gpu", "nodes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no node carries label 'gpu'"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(dir.path().join("in.txt"), "a\n").unwrap();
    let out = support::local_distctl(dir.path(), &["run", "in.txt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--op") && err.contains("--exec"), "{err}");

    // An empty command (`"$CMD"` with CMD unset) would run nothing and
    // succeed: it is refused, before any node is contacted (none listens).
    for args in [
        &["exec", ""][..],
        &["exec", "--", " ", ""],
        &["--json", "exec", ""],
        &["run", "in.txt", "--exec", " "],
    ] {
        let out = Command::new(support::distctl_bin())
            .args(["--hosts", "127.0.0.1:1"])
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains("the command is empty"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

/// `--fanout 1` limits handshakes, not work: every node runs at once. Each
/// node waits until all three have started, so run one at a time they could
/// never finish.
#[test]
fn fanout_1_connects_one_at_a_time_but_every_node_works_at_once() {
    let cluster = TestCluster::start(3);
    let barrier = cluster.dir.path().join("started");
    std::fs::create_dir_all(&barrier).unwrap();
    let d = barrier.display();
    let script = format!(
        "touch {d}/\"${{SSH_CONNECTION##* }}\"; n=0; \
         while [ \"$(ls {d} | wc -l)\" -lt 3 ]; do n=$((n+1)); [ $n -gt 300 ] && exit 9; sleep 0.1; done; echo together"
    );
    let out = exec(&cluster, &["--fanout", "1", "--json", "--", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert_eq!(row["outcome"], "ok", "{row}");
        assert_eq!(row["stdout"], "together\n");
    }
}

#[test]
fn one_node_down_is_exit_1_and_every_node_down_is_exit_3() {
    let mut cluster = TestCluster::start(3);
    cluster.stop_node(1);
    let out = exec(&cluster, &["--json", "--", "echo hi"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let status: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["ok", "unreachable", "ok"]);
    assert!(rows[1]["error"].as_str().unwrap().contains("refused"));
    assert!(rows[1]["exit_code"].is_null());

    cluster.stop_node(0);
    cluster.stop_node(2);
    let out = exec(&cluster, &["--", "echo hi"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no node reachable"));
}
