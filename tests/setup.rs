//! `distctl setup` against real sshd nodes on loopback: pushes the embedded
//! static agent, skips nodes that already have it, refuses the wrong machine
//! type, and the installed agent runs on the node.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use distctl::transport::shell::quote;
use serde_json::Value;
use support::text;
use support::{ClusterOptions, TestCluster};

/// `distctl setup --json [extra]`: exit code and one row per node.
fn setup(cluster: &TestCluster, extra: &[&str]) -> (i32, Vec<Value>) {
    let out: Output = cluster
        .distctl()
        .args(["setup", "--json"])
        .args(extra)
        .output()
        .expect("cannot run distctl");
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code().unwrap(), rows.as_array().unwrap().clone())
}

fn results(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            r["detail"]
                .as_str()
                .or(r["outcome"].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Plain `ssh` to node `i` (the cluster's own keys, strict host keys).
fn ssh(cluster: &TestCluster, i: usize, remote_cmd: &str) -> Output {
    cluster.ssh(i).arg(remote_cmd).output().expect("ssh")
}

fn agent_on(cluster: &TestCluster, i: usize) -> std::path::PathBuf {
    cluster.workdir(i).join("bin").join("worker-agent")
}

#[test]
fn setup_twice_second_time_up_to_date_and_the_agent_runs() {
    let cluster = TestCluster::start(2);
    let (code, rows) = setup(&cluster, &[]);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(results(&rows), ["pushed", "pushed"]);
    for i in 0..2 {
        assert!(cluster.workdir(i).join("runs").is_dir());
        let agent = agent_on(&cluster, i);
        let out = ssh(
            &cluster,
            i,
            &format!("{} version", quote(&agent.display().to_string())),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), distctl_proto::AGENT_VERSION);
        // No temporaries left beside it.
        let names: Vec<_> = std::fs::read_dir(agent.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["worker-agent"]);
    }

    let (code, rows) = setup(&cluster, &[]);
    assert_eq!(code, 0);
    assert_eq!(results(&rows), ["up-to-date", "up-to-date"]);

    // A changed copy on one node is replaced, the other stays.
    std::fs::write(agent_on(&cluster, 1), b"stale").unwrap();
    let (code, rows) = setup(&cluster, &[]);
    assert_eq!(code, 0);
    assert_eq!(results(&rows), ["up-to-date", "pushed"]);

    // The table says the same for people.
    let out = cluster.distctl().arg("setup").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert!(table.starts_with("NODE"), "{table}");
    assert_eq!(table.matches("up to date").count(), 2, "{table}");
}

/// The probe asks the installed agent for its own sha256 (`self-probe`,
/// with the node's cores) and the push checks the upload the same way, so a node whose hashing
/// tools are missing or wrong neither gets the agent pushed on every run
/// nor has a good upload refused; an agent too old to know `self-sha256`
/// is replaced.
#[test]
fn the_agent_hashes_itself_so_the_nodes_hashing_tools_do_not_matter() {
    let cluster = TestCluster::start(2);
    let liar = "#!/bin/sh\ncat >/dev/null\necho '0000000000000000000000000000000000000000000000000000000000000000  -'\n";
    cluster.node_tool(0, "sha256sum", liar);
    cluster.node_tool(0, "shasum", liar);
    let (code, rows) = setup(&cluster, &[]);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(results(&rows), ["pushed", "pushed"]);
    let (code, rows) = setup(&cluster, &[]);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(results(&rows), ["up-to-date", "up-to-date"]);

    // What the installed agent says of itself is the sha256 of its bytes.
    let agent = agent_on(&cluster, 0);
    let out = ssh(
        &cluster,
        0,
        &format!("{} self-sha256", quote(&agent.display().to_string())),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&agent).unwrap();
    let want = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(text(&out.stdout).trim(), want);
    // And what the probe asks of an installed agent, in the probe's lines:
    // the CPUs the login may run on (as `nproc` counts them) and that same sha256.
    let out = ssh(
        &cluster,
        0,
        &format!("{} self-probe; nproc", quote(&agent.display().to_string())),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines[..2],
        [format!("cores {}", lines[2]), format!("installed {want}")],
        "{said}"
    );

    // An older agent, which knows `version` but not `self-sha256`, on the
    // node whose tools lie: replaced by exactly the embedded agent.
    let old = "#!/bin/sh\n[ \"$1\" = version ] && { echo 0.0.1; exit 0; }\necho \"unknown command '$1'\" >&2\nexit 2\n";
    std::fs::write(&agent, old).unwrap();
    let (code, rows) = setup(&cluster, &[]);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(results(&rows), ["pushed", "up-to-date"]);
    assert_eq!(std::fs::read(&agent).unwrap(), bytes);
}

#[test]
fn workdirs_with_spaces_and_quotes() {
    let opts = ClusterOptions {
        workdir: Some(|dir: &Path, i: usize| dir.join(format!("work dir 'it''s' \"q\" $HOME {i}"))),
        ..ClusterOptions::default()
    };
    let cluster = TestCluster::start_with(2, opts);
    let (code, rows) = setup(&cluster, &[]);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(results(&rows), ["pushed", "pushed"]);
    for i in 0..2 {
        let agent = agent_on(&cluster, i);
        assert!(agent.is_file(), "{} missing", agent.display());
        let out = ssh(
            &cluster,
            i,
            &format!("{} version", quote(&agent.display().to_string())),
        );
        assert_eq!(
            text(&out.stdout).trim(),
            distctl_proto::AGENT_VERSION,
            "{}",
            text(&out.stderr)
        );
    }
    let (_, rows) = setup(&cluster, &[]);
    assert_eq!(results(&rows), ["up-to-date", "up-to-date"]);
}

#[test]
fn wrong_machine_is_refused_and_unreachable_nodes_exit_1() {
    let mut cluster = TestCluster::start(2);
    let (code, _) = setup(&cluster, &[]);
    assert_eq!(code, 0);

    // The same agent claiming to be aarch64 code (ELF e_machine = 183).
    let mut bytes = std::fs::read(agent_on(&cluster, 0)).unwrap();
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
    let fake = cluster.dir.path().join("aarch64-agent");
    std::fs::write(&fake, &bytes).unwrap();
    let (code, rows) = setup(&cluster, &["--agent", fake.to_str().unwrap()]);
    assert_eq!(code, 4, "a refused push exits 4: {rows:?}");
    for row in &rows {
        assert_eq!(row["outcome"], "failed");
        let err = row["error"].as_str().unwrap();
        assert!(err.contains("x86_64") && err.contains("aarch64"), "{err}");
    }
    // The installed agent is untouched.
    let out = ssh(
        &cluster,
        0,
        &format!(
            "{} version",
            quote(&agent_on(&cluster, 0).display().to_string())
        ),
    );
    assert!(out.status.success());

    // Not an executable at all: a usage error before any node is touched.
    let script = cluster.dir.path().join("not-elf");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let out = cluster
        .distctl()
        .args(["setup", "--agent"])
        .arg(&script)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a 64-bit Linux executable"), "{stderr}");

    cluster.stop_node(1);
    let (code, rows) = setup(&cluster, &[]);
    assert_eq!(code, 1, "{rows:?}");
    assert_eq!(results(&rows), ["up-to-date", "unreachable"]);
    assert!(rows[1]["error"].as_str().is_some());
}

#[test]
fn embedded_agent_is_static() {
    // `file` is the independent witness; the ELF check lives in distctl's unit tests.
    let cluster = TestCluster::start(1);
    let (code, _) = setup(&cluster, &[]);
    assert_eq!(code, 0);
    let out = Command::new("file").arg(agent_on(&cluster, 0)).output();
    if let Ok(out) = out {
        let desc = text(&out.stdout);
        assert!(
            desc.contains("statically linked") || desc.contains("static-pie"),
            "{desc}"
        );
    }
}

/// `--fanout 1` still reaches every node, and says which node to rerun.
#[test]
fn setup_with_fanout_1_pushes_to_every_node() {
    let mut cluster = TestCluster::start(3);
    let (code, rows) = setup(&cluster, &["--fanout", "1"]);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(results(&rows), ["pushed", "pushed", "pushed"]);

    cluster.stop_node(2);
    let out = cluster.distctl().args(["setup"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("node3: unreachable"), "{err}");
    assert!(
        err.contains("rerun on them with --nodes @failed (node3)"),
        "{err}"
    );
}
