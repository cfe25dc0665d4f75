//! Feedback while waiting, as a person sees it on a terminal: after a
//! second, one line with how many nodes are done and which are pending;
//! `collect --every` prints a line per round and a summary. None of it off
//! a terminal or with `-q`.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::pty::{final_lines, Terminal};
use support::TestCluster;

/// A node that accepts the TCP connection and then says nothing, so that
/// its ssh waits; dropping the listener and the held sockets lets it fail.
struct StuckNode {
    listener: TcpListener,
    held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl StuckNode {
    fn start() -> StuckNode {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (l, h) = (listener.try_clone().unwrap(), held.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                h.lock().unwrap().push(s);
            }
        });
        StuckNode { listener, held }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    fn release(&self) {
        for s in self.held.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn cluster_with_stuck_node() -> (TestCluster, StuckNode) {
    let cluster = TestCluster::start(2);
    let stuck = StuckNode::start();
    cluster.write_inventory(&format!(
        "\n[[nodes]]\nname = \"stuck\"\nport = {}\nconnect_timeout = \"60s\"\n",
        stuck.port()
    ));
    (cluster, stuck)
}

#[test]
fn every_per_node_command_shows_done_and_pending_nodes_while_waiting() {
    let (cluster, stuck) = cluster_with_stuck_node();
    let local = cluster.dir.path().join("tree");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("a.txt"), "a\n").unwrap();
    std::fs::write(cluster.workdir(0).join("f.txt"), "f\n").ok();
    let fetched = cluster.dir.path().join("fetched");
    let commands: Vec<(&str, Vec<String>)> = vec![
        ("exec", vec!["exec".into(), "echo".into(), "hi".into()]),
        ("status", vec!["status".into()]),
        ("setup", vec!["setup".into()]),
        ("sync", vec!["sync".into(), local.display().to_string()]),
        (
            "fetch",
            vec![
                "fetch".into(),
                "a.txt".into(),
                "--to".into(),
                fetched.display().to_string(),
            ],
        ),
    ];
    for (name, args) in commands {
        let mut cmd = cluster.distctl();
        cmd.args(&args);
        let term = Terminal::spawn(&cmd);
        let line = format!("distctl {name}: 2/3 done");
        term.wait_for(&line, Duration::from_secs(30));
        term.wait_for("waiting for stuck", Duration::from_secs(5));
        // Once two nodes are done, only the stuck one is pending. (An earlier
        // redraw, before node1 was done, may rightly list node1 too.)
        let screen = term.screen();
        let two_done = screen
            .split(['\r', '\n'])
            .filter(|l| l.contains("2/3 done"));
        for redraw in two_done {
            assert!(!redraw.contains("node1"), "{redraw:?} in {screen}");
        }
        stuck.release();
        let (status, screen) = term.finish();
        // The stuck node ends unreachable: exit 1, said in plain words.
        assert_eq!(status.code(), Some(1), "{name}: {screen}");
        let lines = final_lines(&screen);
        assert!(
            !lines.iter().any(|l| l.contains("waiting for")),
            "{name}: the progress line is cleared at the end: {lines:?}"
        );
        if name == "exec" {
            // Node output never mixes with the progress line.
            for n in ["node1", "node2"] {
                assert!(lines.contains(&format!("{n}: hi")), "{lines:?}");
            }
        }
    }
}

#[test]
fn no_progress_line_off_a_terminal_or_with_quiet() {
    let (cluster, stuck) = cluster_with_stuck_node();
    // -q on a terminal: nothing but the result.
    let mut cmd = cluster.distctl();
    cmd.args(["-q", "exec", "sh", "-c", "sleep 1.5; echo hi"]);
    let term = Terminal::spawn(&cmd);
    term.wait_for("node2: hi", Duration::from_secs(30));
    stuck.release();
    let (_, screen) = term.finish();
    assert!(!screen.contains("waiting for"), "{screen}");

    // Piped: stderr carries no progress either.
    let released = std::thread::spawn({
        let held = stuck.held.clone();
        move || {
            while held.lock().unwrap().is_empty() {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(1500));
            for s in held.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    });
    let out = cluster.distctl().args(["status"]).output().unwrap();
    released.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("waiting for"), "{stderr}");
    assert!(!stderr.contains("done ("), "{stderr}");
}

#[test]
fn collect_every_prints_a_line_per_round_and_a_summary_on_a_terminal() {
    let cluster = TestCluster::start(2);
    let csv = cluster.dir.path().join("m.csv");
    let mut cmd = cluster.distctl();
    cmd.args(["collect", "--every", "1s", "--count", "3", "-o"])
        .arg(&csv);
    let term = Terminal::spawn(&cmd);
    let (status, screen) = term.finish();
    assert_eq!(status.code(), Some(0), "{screen}");
    let lines = final_lines(&screen);
    let rounds: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("distctl collect: round "))
        .collect();
    assert_eq!(rounds.len(), 3, "{lines:?}");
    for (i, l) in rounds.iter().enumerate() {
        assert!(
            l.starts_with(&format!("distctl collect: round {}/3 at ", i + 1)),
            "{l}"
        );
        assert!(l.contains(" UTC: 2/2 node(s) sampled in "), "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("distctl collect: 3 round(s) in ")
                && l.ends_with(": 6 sample(s) written, 0 missed")),
        "{lines:?}"
    );

    // Piped: the rows, no round lines.
    let out = cluster
        .distctl()
        .args(["collect", "--every", "1s", "--count", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("distctl collect: round"), "{stderr}");
    assert!(!stderr.contains("sample(s) written"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1 + 4);
}

#[test]
fn the_run_bar_moves_with_the_bytes_before_any_chunk_finishes() {
    let cluster = TestCluster::start(2);
    let dir = cluster.dir.path();
    let input = dir.join("in.txt");
    let mut text = String::new();
    for i in 0..262_144 {
        text.push_str(&format!("{i:07}\n"));
    }
    std::fs::write(&input, &text).unwrap();
    let marker = dir.join("go");
    // Each chunk is read whole, then held until the test says go.
    let exec = format!(
        "cat >/dev/null; while [ ! -e '{}' ]; do sleep 0.05; done",
        marker.display()
    );
    let mut cmd = cluster.distctl();
    cmd.arg("run")
        .arg(&input)
        .args(["--chunk-size", "1M", "--exec", &exec, "-o"])
        .arg(dir.join("out.txt"));
    let term = Terminal::spawn(&cmd);
    term.wait_for("2.0 MiB/2.0 MiB sent", Duration::from_secs(60));
    // Half a second on, there is a rate.
    term.wait_for("2.0 MiB/2.0 MiB sent, ", Duration::from_secs(10));
    term.wait_for(" lines/s, ", Duration::from_secs(10));
    let screen = term.screen();
    // Every byte is up, no chunk has finished: the bar moved with the bytes.
    assert!(screen.contains("0 chunk(s) done"), "{screen}");
    assert!(!screen.contains("1 chunk(s) done"), "{screen}");
    assert!(screen.contains(" elapsed"), "{screen}");
    // No ETA or rate before there is one; lines/s with separators.
    assert!(!screen.contains("ETA 0s"), "{screen}");
    assert!(!screen.contains("0 B/s"), "{screen}");
    let rates: Vec<&str> = screen
        .split(", ")
        .filter(|p| p.ends_with(" lines/s"))
        .collect();
    assert!(!rates.is_empty(), "{screen}");
    for r in rates {
        let n = r.trim_end_matches(" lines/s");
        let groups: Vec<&str> = n.split(',').collect();
        assert!(
            groups[0].len() <= 3 && groups[1..].iter().all(|g| g.len() == 3),
            "{r}"
        );
    }
    std::fs::write(&marker, "").unwrap();
    let (status, screen) = term.finish();
    assert_eq!(status.code(), Some(0), "{screen}");
}

#[test]
fn control_characters_from_nodes_are_shown_escaped_on_a_terminal() {
    let cluster = TestCluster::start(2);
    let cmd_line = r"printf 'a\033]0;pwned\007b\033[2Jc\r\n'";
    let on_terminal = |extra: &[&str]| {
        let mut cmd = cluster.distctl();
        cmd.arg("exec").args(extra).arg(cmd_line);
        let (status, screen) = Terminal::spawn(&cmd).finish();
        assert_eq!(status.code(), Some(0), "{screen}");
        screen
    };
    let screen = on_terminal(&[]);
    assert!(
        screen.contains("node1: a^[]0;pwned^Gb^[[2Jc\r\n"),
        "{screen:?}"
    );
    assert!(!screen.contains('\x07'), "{screen:?}");
    let screen = on_terminal(&["--gather"]);
    assert!(screen.contains("a^[]0;pwned^Gb^[[2Jc"), "{screen:?}");
    assert!(!screen.contains('\x07'), "{screen:?}");
    // Asked for raw, the bytes reach the terminal as sent.
    let screen = on_terminal(&["--raw-output"]);
    assert!(screen.contains("a\x1b]0;pwned\x07b"), "{screen:?}");
    // Piped, nothing is changed.
    let out = cluster.distctl().args(["exec", cmd_line]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("node2: a\x1b]0;pwned\x07b\x1b[2Jc\r\n"),
        "{stdout:?}"
    );
}

#[test]
fn gathered_output_is_bounded_per_node_and_says_what_was_cut() {
    let cluster = TestCluster::start(2);
    let out = cluster
        .distctl()
        .args(["exec", "--gather", "head -c 3000000 /dev/zero | tr '\\0' a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("node[1-2] (output cut at 1.0 MiB of 2.9 MiB; --outdir keeps all)"),
        "{}",
        &stdout[..300.min(stdout.len())]
    );
    assert!(out.stdout.len() < (1 << 20) + 1000, "{}", out.stdout.len());
}
