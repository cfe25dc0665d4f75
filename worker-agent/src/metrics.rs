//! `worker-agent sample` and `worker-agent facts`: node metrics for
//! `distctl collect` and `distctl status`.
//!
//! CPU, memory, load and uptime come from sysinfo; disk figures from
//! `statvfs` of the workdir (as `df` counts them, not sysinfo's total −
//! available); IO rates from `/proc/diskstats` and `/proc/net/dev`, parsed by
//! the same code distctl's agentless sampler uses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use distctl_proto::metrics::{
    mib, round, set_disk, set_io_rates, IoCounters, MetricsSample, NodeFacts, Sampler,
};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

const USAGE: &str = "usage: worker-agent sample [--interval DURATION] [--path DIR]\n       worker-agent facts --json";

/// Entry point for the `sample` and `facts` subcommands; returns the exit code.
pub fn main(cmd: &str, args: &[String]) -> i32 {
    let result = match cmd {
        "sample" => parse_sample_args(args).and_then(|(interval, path)| sample(interval, &path)),
        "facts" if args == ["--json"] => facts(),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(e) => {
            eprintln!("worker-agent: {cmd}: {e}");
            2
        }
    }
}

fn parse_sample_args(args: &[String]) -> Result<(Duration, PathBuf), String> {
    let mut interval = Duration::from_secs(1);
    let mut path = PathBuf::from(".");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--interval" => interval = parse_duration(value()?)?,
            "--path" => path = PathBuf::from(value()?),
            _ => return Err(format!("unknown argument '{a}'\n{USAGE}")),
        }
    }
    Ok((interval, path))
}

/// `250ms`, `1s`, `1.5s` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = match s.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => (s.strip_suffix('s').unwrap_or(s), 1.0),
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| Duration::from_secs_f64(v * scale))
        .ok_or_else(|| format!("invalid duration '{s}' (e.g. 500ms, 1s)"))
}

fn sample(interval: Duration, path: &Path) -> Result<String, String> {
    let cpu_kind = CpuRefreshKind::nothing().with_usage();
    let mut sys = System::new_with_specifics(RefreshKind::nothing().with_cpu(cpu_kind))
        .map_err(|e| format!("sysinfo: {e}"))?;
    let io_before = read_io();
    let start = Instant::now();
    // sysinfo needs a minimum gap between two CPU readings to compute usage.
    std::thread::sleep(interval.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL));
    sys.refresh_cpu_specifics(cpu_kind);
    let io_after = read_io();
    let secs = start.elapsed().as_secs_f64();
    sys.refresh_memory_specifics(MemoryRefreshKind::everything());

    let mut s = MetricsSample {
        sampler: Some(Sampler::Agent),
        cpu_pct: Some(round(f64::from(sys.global_cpu_usage()), 1)),
        cores: Some(sys.cpus().len() as u32),
        mem_used_mib: Some(mib(sys.used_memory())),
        mem_total_mib: Some(mib(sys.total_memory())),
        swap_used_mib: Some(mib(sys.used_swap())),
        uptime_s: System::uptime().ok(),
        ..MetricsSample::default()
    };
    if let Ok(l) = System::load_average() {
        s.load1 = Some(l.one);
        s.load5 = Some(l.five);
        s.load15 = Some(l.fifteen);
    }
    let (total, free) = statvfs(&existing_ancestor(path))?;
    set_disk(&mut s, total, free);
    if let (Some(a), Some(b)) = (io_before, io_after) {
        set_io_rates(&mut s, a, b, secs);
    }
    serde_json::to_string(&s).map_err(|e| e.to_string())
}

fn facts() -> Result<String, String> {
    let mut sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::everything()),
    )
    .map_err(|e| format!("sysinfo: {e}"))?;
    sys.refresh_memory();
    let f = NodeFacts {
        hostname: System::host_name().unwrap_or_default(),
        os: System::long_os_version().unwrap_or_default(),
        kernel: System::kernel_version().unwrap_or_default(),
        arch: System::cpu_arch(),
        cores: sys.cpus().len() as u32,
        mem_total_mib: mib(sys.total_memory()),
        swap_total_mib: mib(sys.total_swap()),
        boot_time_s: System::boot_time().unwrap_or_default(),
        agent_version: distctl_proto::AGENT_VERSION.to_string(),
    };
    serde_json::to_string(&f).map_err(|e| e.to_string())
}

/// Block and network counters now; `None` where /proc is not readable.
fn read_io() -> Option<IoCounters> {
    let diskstats = std::fs::read_to_string("/proc/diskstats").ok()?;
    let net_dev = std::fs::read_to_string("/proc/net/dev").ok()?;
    let devices: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    Some(IoCounters::parse(&diskstats, &net_dev, &devices))
}

/// The workdir may not exist yet (before `setup`): measure the filesystem it will be on.
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.is_dir() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    p
}

/// (total bytes, free bytes) of the filesystem holding `path`.
fn statvfs(path: &Path) -> Result<(u64, u64), String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("bad path {}", path.display()))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "statvfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * frsize, st.f_bfree as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn sample_is_sane() {
        let json = sample(Duration::from_millis(250), Path::new("/nonexistent/dir")).unwrap();
        let s: MetricsSample = serde_json::from_str(&json).unwrap();
        assert!(s.mem_used_mib.unwrap() <= s.mem_total_mib.unwrap());
        let cpu = s.cpu_pct.unwrap();
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(s.cores.unwrap() >= 1);
        assert!(s.disk_used_gib.unwrap() <= s.disk_total_gib.unwrap());
    }
}
