//! One metrics sample of one node, shared by both samplers: `worker-agent sample`
//! prints it as JSON, distctl's agentless SSH sampler builds it from raw `/proc`
//! text, and `distctl collect` writes it as a CSV row, an NDJSON object or
//! Prometheus gauges.
//!
//! Everything either sampler reads of a node is parsed here, once, so the two
//! agree by construction: the figures of one look ([`Snapshot`]: uptime,
//! load, cores, memory), the counters turned into rates ([`Counters`]:
//! `/proc/stat`, `/proc/diskstats`, `/proc/net/dev`), and the POSIX shell
//! probe used where no agent is installed ([`probe_script`], read back by
//! [`ProbeOutput`]). The agent reads the same files itself and hands their
//! text to the same parsers.

use std::collections::HashMap;
use std::time::Duration;

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

/// Memory figures of `/proc/meminfo`, in KiB as the kernel gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    pub total_kib: u64,
    /// MemAvailable; on kernels before 3.14, which lack it, MemFree + Buffers + Cached.
    pub available_kib: u64,
    pub swap_total_kib: u64,
    pub swap_free_kib: u64,
}

/// The `/proc/meminfo` keys [`Memory::parse`] reads (the shell probe prints only these).
pub const MEMINFO_KEYS: [&str; 7] = [
    "MemTotal",
    "MemAvailable",
    "MemFree",
    "Buffers",
    "Cached",
    "SwapTotal",
    "SwapFree",
];

impl Memory {
    /// `None` without a MemTotal line.
    pub fn parse(meminfo: &str) -> Option<Memory> {
        let mut kib: HashMap<&str, u64> = HashMap::new();
        for line in meminfo.lines() {
            let mut it = line.split_whitespace();
            if let (Some(k), Some(Ok(v))) = (it.next(), it.next().map(str::parse::<u64>)) {
                kib.insert(k.trim_end_matches(':'), v);
            }
        }
        let get = |k: &str| kib.get(k).copied().unwrap_or(0);
        let total_kib = *kib.get("MemTotal")?;
        let available_kib = kib
            .get("MemAvailable")
            .copied()
            .unwrap_or_else(|| get("MemFree") + get("Buffers") + get("Cached"));
        Some(Memory {
            total_kib,
            available_kib,
            swap_total_kib: get("SwapTotal"),
            swap_free_kib: get("SwapFree"),
        })
    }
}

/// Count CPUs in a kernel list like `0-3,8,10-11` (`/sys/devices/system/cpu/online`,
/// what `getconf _NPROCESSORS_ONLN` reads too).
pub fn count_cpus(list: &str) -> Option<u32> {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        n += b.checked_sub(a)? + 1;
    }
    (n > 0).then_some(n)
}

/// Seconds since boot, the first field of `/proc/uptime`.
pub fn parse_uptime(proc_uptime: &str) -> Option<f64> {
    proc_uptime.split_whitespace().next()?.parse().ok()
}

/// The three load averages of `/proc/loadavg`.
pub fn parse_loadavg(proc_loadavg: &str) -> Option<[f64; 3]> {
    let v: Vec<f64> = proc_loadavg
        .split_whitespace()
        .take(3)
        .map_while(|x| x.parse().ok())
        .collect();
    v.try_into().ok()
}

/// Uptime for people: `3d 4h`, `2h 5m`, `4m 10s`.
pub fn format_uptime(s: u64) -> String {
    let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {}s", s % 60)
    }
}

/// The raw text of the files one look at a node reads.
#[derive(Debug, Clone, Default)]
pub struct ProcTexts {
    pub uptime: String,
    pub loadavg: String,
    pub meminfo: String,
    /// `/sys/devices/system/cpu/online`.
    pub cpus_online: String,
}

impl ProcTexts {
    /// A sample holding what these texts show (no disk, no rates yet).
    pub fn sample(&self, sampler: Sampler) -> Result<MetricsSample, String> {
        let mut s = MetricsSample {
            sampler: Some(sampler),
            ..MetricsSample::default()
        };
        Snapshot::parse(self)?.fill(&mut s);
        Ok(s)
    }
}

/// What one look at a node shows without an interval: the figures `status`
/// shows and every `collect` row starts from.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Snapshot {
    pub uptime_s: u64,
    pub load: [f64; 3],
    pub cores: Option<u32>,
    pub memory: Memory,
}

impl Snapshot {
    /// Uptime, load and MemTotal must be there; a missing CPU list leaves cores empty.
    pub fn parse(t: &ProcTexts) -> Result<Snapshot, String> {
        let missing = |what: &str| format!("unexpected probe output: no {what}");
        Ok(Snapshot {
            uptime_s: parse_uptime(&t.uptime).ok_or_else(|| missing("/proc/uptime"))? as u64,
            load: parse_loadavg(&t.loadavg).ok_or_else(|| missing("/proc/loadavg"))?,
            cores: count_cpus(&t.cpus_online),
            memory: Memory::parse(&t.meminfo).ok_or_else(|| missing("MemTotal"))?,
        })
    }

    /// Set the sample's uptime, load, cores, memory and swap columns.
    pub fn fill(&self, s: &mut MetricsSample) {
        let m = &self.memory;
        s.uptime_s = Some(self.uptime_s);
        [s.load1, s.load5, s.load15] = self.load.map(Some);
        s.cores = self.cores;
        s.mem_total_mib = Some(mib(m.total_kib << 10));
        s.mem_used_mib = Some(mib(m.total_kib.saturating_sub(m.available_kib) << 10));
        s.swap_used_mib = Some(mib(m.swap_total_kib.saturating_sub(m.swap_free_kib) << 10));
    }
}

/// The counters read at both ends of the sample interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counters {
    /// `/proc/uptime` at the reading: the clock the interval is measured on.
    pub uptime_s: f64,
    pub cpu: CpuTimes,
    pub io: IoCounters,
}

impl Counters {
    /// `None` without a `/proc/uptime` or `/proc/stat` reading.
    pub fn parse<S: AsRef<str>>(
        uptime: &str,
        proc_stat: &str,
        diskstats: &str,
        net_dev: &str,
        block_devices: &[S],
    ) -> Option<Counters> {
        Some(Counters {
            uptime_s: parse_uptime(uptime)?,
            cpu: CpuTimes::parse(proc_stat)?,
            io: IoCounters::parse(diskstats, net_dev, block_devices),
        })
    }

    /// Set the sample's CPU and IO rate columns from two readings.
    pub fn set_rates(s: &mut MetricsSample, before: &Counters, after: &Counters) {
        s.cpu_pct = Some(CpuTimes::busy_pct(before.cpu, after.cpu));
        set_io_rates(s, before.io, after.io, after.uptime_s - before.uptime_s);
    }
}

/// The shell line that sets `$d` to the workdir (`quoted_workdir`, already
/// shell-quoted) or, before `setup`, its nearest existing ancestor: the
/// filesystem both samplers measure. Builtins only.
pub fn probe_dir(quoted_workdir: &str) -> String {
    format!(
        r#"d={quoted_workdir}; while [ ! -d "$d" ]; do case $d in */*) d=${{d%/*}}; d=${{d:-/}};; *) d=.;; esac; done
"#
    )
}

/// The shell probe for nodes without the agent, run after [`probe_dir`]:
/// plain POSIX sh (no awk, no procps), so it works before `setup` and on
/// minimal images. With an interval it reads the counters, sleeps, reads
/// them again. Builtins only but for `df` (and `cat`, `ls`, `sleep` with an
/// interval): at 64 nodes every fork on the nodes shows in the wall time.
/// Prints `@section` lines that [`ProbeOutput`] reads back; callers may
/// append their own sections.
pub fn probe_script(interval: Option<Duration>) -> String {
    let mut s = String::new();
    if let Some(interval) = interval {
        let secs = format!("{:.3}", interval.as_secs_f64());
        s.push_str(&format!(
            r#"snap() {{ echo "@uptime$1"; read -r l < /proc/uptime; echo "$l"; echo "@stat$1"; read -r l < /proc/stat; echo "$l"
echo "@diskstats$1"; cat /proc/diskstats 2>/dev/null; echo "@netdev$1"; cat /proc/net/dev 2>/dev/null; }}
snap 0; sleep {secs}; snap 1
echo @blockdevs; ls /sys/block 2>/dev/null
"#
        ));
    }
    let keys: Vec<String> = MEMINFO_KEYS.iter().map(|k| format!("{k}:")).collect();
    s.push_str(&format!(
        r#"echo @uptime; read -r l < /proc/uptime; echo "$l"
echo @loadavg; read -r l < /proc/loadavg; echo "$l"
echo @cpus; read -r l < /sys/devices/system/cpu/online; echo "$l"
echo @meminfo; while read -r k v rest; do case $k in {}) echo "$k $v";; esac; done < /proc/meminfo
echo @df; df -Pk -- "$d"
"#,
        keys.join("|")
    ));
    s
}

/// The shell probe's output, split into its `@section`s.
#[derive(Debug, Default)]
pub struct ProbeOutput<'a> {
    sections: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> ProbeOutput<'a> {
    pub fn parse(text: &'a str) -> ProbeOutput<'a> {
        let mut sections: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut current = "";
        for line in text.lines() {
            match line.strip_prefix('@') {
                Some(name) if name.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    current = name;
                    sections.entry(name).or_default();
                }
                _ => sections.entry(current).or_default().push(line),
            }
        }
        ProbeOutput { sections }
    }

    /// The lines of a section; `None` when the probe did not print it.
    pub fn section(&self, name: &str) -> Option<&[&'a str]> {
        self.sections.get(name).map(Vec::as_slice)
    }

    fn text(&self, name: &str) -> String {
        self.section(name).map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The sample the probe measured (node, host and timestamp left empty):
    /// rates only when it ran with an interval.
    pub fn sample(&self) -> Result<MetricsSample, String> {
        let mut s = ProcTexts {
            uptime: self.text("uptime"),
            loadavg: self.text("loadavg"),
            meminfo: self.text("meminfo"),
            cpus_online: self.text("cpus"),
        }
        .sample(Sampler::Ssh)?;
        let (total, free) = self
            .section("df")
            .and_then(|l| parse_df(l.get(1)?))
            .ok_or("unexpected probe output: no df output")?;
        set_disk(&mut s, total, free);
        if self.section("stat0").is_some() {
            let devices: Vec<&str> = self
                .section("blockdevs")
                .unwrap_or_default()
                .iter()
                .flat_map(|x| x.split_whitespace())
                .collect();
            let counters = |i: u8| {
                Counters::parse(
                    &self.text(&format!("uptime{i}")),
                    &self.text(&format!("stat{i}")),
                    &self.text(&format!("diskstats{i}")),
                    &self.text(&format!("netdev{i}")),
                    &devices,
                )
                .ok_or("unexpected probe output: no /proc/stat")
            };
            Counters::set_rates(&mut s, &counters(0)?, &counters(1)?);
        }
        Ok(s)
    }
}

/// (total bytes, free bytes) from a `df -Pk` data line (`fs 1K-blocks used
/// available capacity mount`): free = blocks − used, as `df` counts used.
fn parse_df(line: &str) -> Option<(u64, u64)> {
    let mut it = line.split_whitespace().skip(1);
    let total: u64 = it.next()?.parse().ok()?;
    let used: u64 = it.next()?.parse().ok()?;
    Some((total << 10, total.saturating_sub(used) << 10))
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

    /// `/proc/meminfo` of a 5.15 kernel, abridged.
    const MEMINFO: &str = "MemTotal:        8000000 kB\nMemFree:         1000000 kB\n\
MemAvailable:    6000000 kB\nBuffers:          200000 kB\nCached:          3000000 kB\n\
SwapCached:            0 kB\nSwapTotal:       2097148 kB\nSwapFree:        1048572 kB\n";
    /// A 3.10 kernel (CentOS 7 era) before MemAvailable existed.
    const MEMINFO_OLD: &str = "MemTotal:        8000000 kB\nMemFree:         1000000 kB\n\
Buffers:          200000 kB\nCached:          3000000 kB\nSwapTotal:             0 kB\n\
SwapFree:              0 kB\n";

    fn texts(meminfo: &str) -> ProcTexts {
        ProcTexts {
            uptime: "93784.52 180000.10\n".into(),
            loadavg: "0.52 0.58 0.59 2/1174 12345\n".into(),
            meminfo: meminfo.into(),
            cpus_online: "0-3\n".into(),
        }
    }

    #[test]
    fn snapshot_of_captured_proc_texts() {
        let snap = Snapshot::parse(&texts(MEMINFO)).unwrap();
        assert_eq!(snap.uptime_s, 93784);
        assert_eq!(snap.load, [0.52, 0.58, 0.59]);
        assert_eq!(snap.cores, Some(4));
        let mut s = MetricsSample::default();
        snap.fill(&mut s);
        assert_eq!(s.mem_total_mib, Some(7812));
        assert_eq!(s.mem_used_mib, Some(1953), "MemTotal - MemAvailable");
        assert_eq!(s.swap_used_mib, Some(1024));
        assert_eq!((s.load1, s.load15), (Some(0.52), Some(0.59)));
    }

    #[test]
    fn meminfo_without_memavailable_falls_back_to_free_buffers_cached() {
        let m = Memory::parse(MEMINFO_OLD).unwrap();
        assert_eq!(m.available_kib, 1000000 + 200000 + 3000000);
        let s = texts(MEMINFO_OLD).sample(Sampler::Agent).unwrap();
        assert_eq!(s.mem_used_mib, Some((8000000 - 4200000) >> 10));
        assert_eq!(s.swap_used_mib, Some(0));
    }

    #[test]
    fn missing_or_garbled_texts_are_named() {
        let mut t = texts("Cached: 1 kB\n");
        assert!(Snapshot::parse(&t).unwrap_err().contains("MemTotal"));
        t.meminfo = MEMINFO.into();
        t.loadavg = "0.5 oops".into();
        assert!(Snapshot::parse(&t).unwrap_err().contains("loadavg"));
        t.loadavg = "0.5 0.5 0.5".into();
        t.uptime = String::new();
        assert!(Snapshot::parse(&t).unwrap_err().contains("uptime"));
        t.uptime = "5.0 1.0".into();
        t.cpus_online = String::new();
        assert_eq!(Snapshot::parse(&t).unwrap().cores, None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0-1"), Some(2));
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("0-3,8,10-11\n"), Some(7));
        assert_eq!(count_cpus("x"), None);
        assert_eq!(count_cpus(""), None);
    }

    #[test]
    fn uptime_for_people() {
        assert_eq!(format_uptime(59), "0m 59s");
        assert_eq!(format_uptime(3600 + 54 * 60), "1h 54m");
        assert_eq!(format_uptime(93784), "1d 2h");
    }

    #[test]
    fn shell_probe_output_with_an_interval() {
        let text = "@uptime0\n100.00 1.0\n@stat0\ncpu  100 0 100 800 0 0 0 0 0 0\n\
@diskstats0\n   8 0 sda 1 0 0 0 1 0 0 0 0 0 0\n@netdev0\n  eth0: 0 0 0 0 0 0 0 0 0 0\n\
@uptime1\n102.00 1.0\n@stat1\ncpu  150 0 150 850 50 0 0 0 0 0\n\
@diskstats1\n   8 0 sda 1 0 4096 0 1 0 0 0 0 0 0\n@netdev1\n  eth0: 4096 0 0 0 0 0 0 0 0 0\n\
@blockdevs\nsda\n@uptime\n102.01 1.0\n@loadavg\n1.00 2.00 3.00 1/1 1\n@cpus\n0-1\n\
@meminfo\nMemTotal: 2097152\nMemAvailable: 1048576\n\
@df\nFilesystem 1024-blocks Used Available Capacity Mounted on\n\
/dev/sda1 10485760 4194304 6291456 40% /\n@agent\nnone\n";
        let out = ProbeOutput::parse(text);
        let s = out.sample().unwrap();
        assert_eq!(s.sampler, Some(Sampler::Ssh));
        assert_eq!(
            (s.uptime_s, s.cores, s.load5),
            (Some(102), Some(2), Some(2.0))
        );
        assert_eq!((s.mem_used_mib, s.mem_total_mib), (Some(1024), Some(2048)));
        assert_eq!((s.disk_used_gib, s.disk_total_gib), (Some(4.0), Some(10.0)));
        assert_eq!(s.cpu_pct, Some(50.0));
        assert_eq!(s.disk_read_kib_s, Some(1024.0), "4096 sectors over 2 s");
        assert_eq!(s.net_rx_kib_s, Some(2.0));
        assert_eq!(out.section("agent"), Some(&["none"][..]));
    }

    #[test]
    fn shell_probe_without_interval_has_no_rates() {
        let text = "@uptime\n5.5 1\n@loadavg\n0 0 0 1/1 1\n@cpus\n0\n@meminfo\nMemTotal: 1024\n\
@df\nFilesystem 1024-blocks Used Available Capacity Mounted on\nfs 1048576 0 1048576 0% /\n";
        let s = ProbeOutput::parse(text).sample().unwrap();
        assert_eq!(s.cpu_pct, None);
        assert_eq!(s.disk_read_kib_s, None);
        assert_eq!(s.mem_used_mib, Some(1), "no MemAvailable and nothing free");
        let no_df = ProbeOutput::parse("@uptime\n5 1\n@loadavg\n0 0 0\n@meminfo\nMemTotal: 1\n");
        assert!(no_df.sample().unwrap_err().contains("df"));
    }

    /// The script itself, run by the local `sh`, gives a sane sample.
    #[test]
    fn probe_script_runs_under_sh() {
        for interval in [None, Some(Duration::from_millis(100))] {
            let script = probe_dir("'/nonexistent/workdir'") + &probe_script(interval);
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let s = ProbeOutput::parse(&text).sample().unwrap();
            assert!(s.mem_used_mib.unwrap() <= s.mem_total_mib.unwrap());
            assert!(s.cores.unwrap() >= 1);
            assert!(s.disk_used_gib.unwrap() <= s.disk_total_gib.unwrap());
            assert_eq!(s.cpu_pct.is_some(), interval.is_some());
        }
    }
}
