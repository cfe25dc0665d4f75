//! What ssh said reaches the user: an unresolvable ProxyJump host and a
//! missing identity_file are named, not reported as a generic handshake or
//! authentication failure. Real sshd on loopback.

mod support;

use serde_json::Value;
use support::TestCluster;

/// `status --json` rows, by node name → the reason it was unreachable.
fn reasons(cluster: &TestCluster) -> Vec<(String, String)> {
    let out = cluster
        .distctl()
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["node"].as_str().unwrap().to_string(),
                r["error"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn proxyjump_and_identity_file_failures_say_what_ssh_said() {
    let cluster = TestCluster::start(1);
    let port = cluster.port(0);
    cluster.write_inventory(&format!(
        "\n[[nodes]]\nname = \"viajump\"\nport = {port}\nssh_options = [\"ProxyJump=nosuchjump.invalid\"]\n\
         \n[[nodes]]\nname = \"nokey\"\nport = {port}\nidentity_file = \"/nonexistent/distctl-test-key\"\n"
    ));
    let rows = reasons(&cluster);
    let reason = |n: &str| rows.iter().find(|(name, _)| name == n).unwrap().1.clone();
    assert_eq!(reason("node1"), "");
    // Before the node settings were scoped to its own Host block, the jump
    // host read them too and jumped to itself until the timeout.
    let jump = reason("viajump");
    assert!(
        jump.starts_with("cannot resolve host name nosuchjump.invalid"),
        "{jump}"
    );
    let key = reason("nokey");
    assert!(
        key == "identity_file /nonexistent/distctl-test-key does not exist",
        "{key}"
    );
}
