//! A made-up `distctl collect` CSV (schema v1) of many nodes over hours,
//! for `distctl report` tests: one row per node per minute, each node with
//! its own load shape, one node unreachable for a stretch.

use std::fmt::Write;

pub const HEADER: &str = "timestamp_utc,node,host,status,sampler,uptime_s,load1,load5,load15,cpu_pct,cores,mem_used_mib,mem_total_mib,swap_used_mib,disk_used_gib,disk_total_gib,disk_read_kib_s,disk_write_kib_s,net_rx_kib_s,net_tx_kib_s,error";

/// `nodes` nodes named node1…, `hours` hours from 2026-11-23T06:58:52Z, a
/// row a minute. `node2` (when there is one) is unreachable for the second
/// quarter of the time.
pub fn generate(nodes: usize, hours: u64) -> String {
    let start = 1_795_417_132u64; // 2026-11-23T06:58:52Z
    let minutes = hours * 60;
    let mut s = String::from(HEADER);
    s.push('\n');
    for m in 0..minutes {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(start + m * 60);
        let ts = humantime::format_rfc3339_seconds(t).to_string();
        for n in 1..=nodes {
            let down = n == 2 && m >= minutes / 4 && m < minutes / 2;
            if down {
                writeln!(
                    s,
                    "{ts},node{n},10.0.0.{n},unreachable,,,,,,,,,,,,,,,,,connection timed out"
                )
                .unwrap();
                continue;
            }
            let phase = (m as f64 / 30.0 + n as f64).sin();
            let cpu = (50.0 + 40.0 * phase).clamp(0.0, 100.0);
            let load1 = 4.0 * (1.0 + phase) * n as f64 / nodes as f64;
            let mem_total = 16_384 * n as u64;
            let mem = (mem_total as f64 * (0.3 + 0.2 * phase)) as u64;
            writeln!(
                s,
                "{ts},node{n},10.0.0.{n},ok,agent,{},{load1:.2},{:.2},{:.2},{cpu:.1},{},{mem},{mem_total},{},{:.2},500.00,{:.1},{:.1},{:.1},{:.1},",
                3600 + m * 60,
                load1 * 0.8,
                load1 * 0.6,
                4 * n,
                (m % 7) * 10,
                100.0 + m as f64 * 0.01 * n as f64,
                (m % 13) as f64 * 4.0,
                (m % 11) as f64 * 9.0,
                if n == 1 { 0.0 } else { 120.0 + 50.0 * phase },
                if n == 1 { 0.0 } else { 80.0 + 30.0 * phase },
            )
            .unwrap();
        }
    }
    s
}
