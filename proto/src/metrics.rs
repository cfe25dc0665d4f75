//! One metrics sample of one node, shared by both samplers: `worker-agent sample`
//! prints it as JSON, distctl's agentless SSH sampler builds it from raw `/proc`
//! text, and `distctl collect` writes it as a CSV row, an NDJSON object or
//! Prometheus gauges.
//!
//! The counters both samplers turn into rates (`/proc/stat`, `/proc/diskstats`,
//! `/proc/net/dev`) are parsed here, once, so the two agree by construction.

use serde::{Deserialize, Serialize};

/// Version of the column set below (README "collect"). Bump it whenever a
/// column is added, removed, renamed or changes unit.
pub const SCHEMA_VERSION: u32 = 1;

/// How a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleStatus {
    /// Every metric was measured.
    #[default]
    Ok,
    /// No connection to the node: metrics empty, `error` says why.
    Unreachable,
    /// Connected, but sampling failed: metrics empty, `error` says why.
    Error,
}

/// Which side measured the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampler {
    /// `worker-agent sample` (sysinfo + statvfs).
    Agent,
    /// A POSIX shell probe over SSH (`/proc`, `df`).
    Ssh,
}

/// One row of `distctl collect`. Field order is the CSV column order; the
/// field names are the CSV header (name and unit in every metric's name).
/// The agent fills the metrics; distctl fills timestamp, node, host and status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSample {
    /// Controller clock when the round's sampling started, RFC 3339 UTC.
    pub timestamp_utc: String,
    pub node: String,
    pub host: String,
    pub status: SampleStatus,
    pub sampler: Option<Sampler>,
    pub uptime_s: Option<u64>,
    pub load1: Option<f64>,
    pub load5: Option<f64>,
    pub load15: Option<f64>,
    /// Busy share of all CPUs over the sample interval, 0–100 (like `sar 1 1`'s 100 − %idle).
    pub cpu_pct: Option<f64>,
    pub cores: Option<u32>,
    /// MemTotal − MemAvailable.
    pub mem_used_mib: Option<u64>,
    pub mem_total_mib: Option<u64>,
    pub swap_used_mib: Option<u64>,
    /// Filesystem of the node's workdir, as `df` counts it (blocks − free blocks).
    pub disk_used_gib: Option<f64>,
    pub disk_total_gib: Option<f64>,
    pub disk_read_kib_s: Option<f64>,
    pub disk_write_kib_s: Option<f64>,
    /// All interfaces but loopback.
    pub net_rx_kib_s: Option<f64>,
    pub net_tx_kib_s: Option<f64>,
    pub error: Option<String>,
}

/// Static facts about a node (`worker-agent facts --json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeFacts {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cores: u32,
    pub mem_total_mib: u64,
    pub swap_total_mib: u64,
    /// Boot time, seconds since the Unix epoch.
    pub boot_time_s: u64,
    pub agent_version: String,
}

/// Aggregate CPU jiffies from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

impl CpuTimes {
    /// The `cpu ` line of `/proc/stat`: user nice system idle iowait irq softirq
    /// steal guest guest_nice. Idle and iowait are idle; guest time is already
    /// inside user, so it is not added again.
    pub fn parse(proc_stat: &str) -> Option<CpuTimes> {
        let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if v.len() < 4 {
            return None;
        }
        let total: u64 = v.iter().take(8).sum();
        let idle = v[3] + v.get(4).copied().unwrap_or(0);
        Some(CpuTimes {
            busy: total - idle,
            total,
        })
    }

    /// Busy share between two readings, percent of all CPUs.
    pub fn busy_pct(before: CpuTimes, after: CpuTimes) -> f64 {
        let total = after.total.saturating_sub(before.total);
        if total == 0 {
            return 0.0;
        }
        let busy = after.busy.saturating_sub(before.busy).min(total);
        round(busy as f64 * 100.0 / total as f64, 1)
    }
}

/// Cumulative byte counters of block devices and network interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoCounters {
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// Whether a device listed in `/sys/block` is a disk whose IO counts: layered
/// and virtual devices (device mapper, md RAID, loop, RAM disks, optical) would
/// count the same bytes twice or are not disks.
pub fn is_counted_disk(name: &str) -> bool {
    const SKIP: [&str; 8] = ["loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd"];
    !SKIP.iter().any(|p| name.starts_with(p))
}

impl IoCounters {
    /// Sum `/proc/diskstats` over the whole disks named in `block_devices` (the
    /// entries of `/sys/block`; partitions are not there) and `/proc/net/dev`
    /// over every interface but `lo`. Sectors in diskstats are 512 bytes.
    pub fn parse<S: AsRef<str>>(diskstats: &str, net_dev: &str, block_devices: &[S]) -> IoCounters {
        let mut c = IoCounters::default();
        for line in diskstats.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let name = f[2];
            if !is_counted_disk(name) || !block_devices.iter().any(|b| b.as_ref() == name) {
                continue;
            }
            let num = |i: usize| f[i].parse::<u64>().unwrap_or(0);
            c.disk_read_bytes += num(5) * 512;
            c.disk_write_bytes += num(9) * 512;
        }
        for line in net_dev.lines() {
            let Some((iface, rest)) = line.split_once(':') else {
                continue;
            };
            let iface = iface.trim();
            if iface == "lo" || iface.contains('|') {
                continue;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if f.len() >= 9 {
                c.net_rx_bytes += f[0];
                c.net_tx_bytes += f[8];
            }
        }
        c
    }
}

/// Fill the IO rate fields of `s` from two counter readings `secs` apart (KiB/s).
pub fn set_io_rates(s: &mut MetricsSample, before: IoCounters, after: IoCounters, secs: f64) {
    let rate = |a: u64, b: u64| {
        if secs <= 0.0 {
            0.0
        } else {
            round(b.saturating_sub(a) as f64 / 1024.0 / secs, 1)
        }
    };
    s.disk_read_kib_s = Some(rate(before.disk_read_bytes, after.disk_read_bytes));
    s.disk_write_kib_s = Some(rate(before.disk_write_bytes, after.disk_write_bytes));
    s.net_rx_kib_s = Some(rate(before.net_rx_bytes, after.net_rx_bytes));
    s.net_tx_kib_s = Some(rate(before.net_tx_bytes, after.net_tx_bytes));
}

/// Fill the disk fields of `s` from a filesystem's block counts, as `df` does:
/// used = blocks − free blocks (not total − available, which adds the root reserve).
pub fn set_disk(s: &mut MetricsSample, total_bytes: u64, free_bytes: u64) {
    let gib = |b: u64| round(b as f64 / (1u64 << 30) as f64, 2);
    s.disk_total_gib = Some(gib(total_bytes));
    s.disk_used_gib = Some(gib(total_bytes.saturating_sub(free_bytes)));
}

/// Bytes to whole MiB (rounded down, like `free -m`).
pub fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// Round to `digits` decimals, so CSV cells stay short.
pub fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_busy_share() {
        let a = CpuTimes::parse("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let b = CpuTimes::parse("cpu  150 0 150 850 50 0 0 0 0 0\n").unwrap();
        assert_eq!(a.total, 1000);
        assert_eq!(CpuTimes::busy_pct(a, b), 50.0);
        assert_eq!(CpuTimes::busy_pct(a, a), 0.0);
    }

    #[test]
    fn io_counters_skip_partitions_layers_and_loopback() {
        let disk = "   8       0 sda 10 0 100 0 20 0 200 0 0 0 0\n\
                    8       1 sda1 10 0 100 0 20 0 200 0 0 0 0\n\
                  253       0 dm-0 10 0 100 0 20 0 200 0 0 0 0\n\
                    7       0 loop0 10 0 100 0 20 0 200 0 0 0 0\n";
        let net = "Inter-|   Receive                            |  Transmit\n \
                   face |bytes    packets errs drop fifo frame compressed multicast|bytes\n    \
                   lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n  \
                   eth0: 1000 5 0 0 0 0 0 0 2000 5 0 0 0 0 0 0\n";
        let c = IoCounters::parse(disk, net, &["sda", "dm-0", "loop0"]);
        assert_eq!(c.disk_read_bytes, 100 * 512);
        assert_eq!(c.disk_write_bytes, 200 * 512);
        assert_eq!((c.net_rx_bytes, c.net_tx_bytes), (1000, 2000));
    }

    #[test]
    fn rates_and_df_figures() {
        let mut s = MetricsSample::default();
        let a = IoCounters::default();
        let b = IoCounters {
            disk_read_bytes: 2048,
            disk_write_bytes: 0,
            net_rx_bytes: 1024,
            net_tx_bytes: 512,
        };
        set_io_rates(&mut s, a, b, 2.0);
        assert_eq!(s.disk_read_kib_s, Some(1.0));
        assert_eq!(s.net_tx_kib_s, Some(0.3));
        set_disk(&mut s, 10 << 30, 4 << 30);
        assert_eq!((s.disk_used_gib, s.disk_total_gib), (Some(6.0), Some(10.0)));
    }

    #[test]
    fn agent_json_fills_metrics_only() {
        let s: MetricsSample = serde_json::from_str(r#"{"cores":4,"load1":0.5}"#).unwrap();
        assert_eq!(s.status, SampleStatus::Ok);
        assert_eq!(s.cores, Some(4));
        assert_eq!(s.node, "");
    }
}
