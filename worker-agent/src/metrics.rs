//! `worker-agent sample`: node metrics for `distctl collect` and
//! `distctl status`.
//!
//! The sample reads the same `/proc` and `/sys` files as distctl's shell
//! probe and hands their text to the same parsers in `distctl_proto::metrics`,
//! so the two samplers agree by construction; disk figures come from
//! `statvfs` of the workdir (as `df` counts them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use distctl_proto::metrics::{set_disk, Counters, ProcTexts, Sampler};
use distctl_proto::units::parse_duration;

const USAGE: &str = "usage: worker-agent sample [--interval DURATION] [--path DIR]";

/// Entry point for the `sample` subcommand; returns the exit code.
pub fn main(cmd: &str, args: &[String]) -> i32 {
    let result = match cmd {
        "sample" => parse_sample_args(args).and_then(|(interval, path)| sample(interval, &path)),
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

fn sample(interval: Duration, path: &Path) -> Result<String, String> {
    let before = read_counters()?;
    std::thread::sleep(interval);
    let after = read_counters()?;
    let mut s = ProcTexts {
        uptime: read("/proc/uptime")?,
        loadavg: read("/proc/loadavg")?,
        meminfo: read("/proc/meminfo")?,
        cpus_online: read("/sys/devices/system/cpu/online").unwrap_or_default(),
    }
    .sample(Sampler::Agent)?;
    Counters::set_rates(&mut s, &before, &after);
    let (total, free) = statvfs(&existing_ancestor(path))?;
    set_disk(&mut s, total, free);
    serde_json::to_string(&s).map_err(|e| e.to_string())
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// The interval's counters now; block and network counts are zero where
/// their files are not readable (as in the shell probe).
fn read_counters() -> Result<Counters, String> {
    let devices: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    Counters::parse(
        &read("/proc/uptime")?,
        &read("/proc/stat")?,
        &read("/proc/diskstats").unwrap_or_default(),
        &read("/proc/net/dev").unwrap_or_default(),
        &devices,
    )
    .ok_or_else(|| "unreadable /proc/uptime or /proc/stat".to_string())
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
    fn interval_takes_the_shared_duration_syntax() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (d, _) = parse_sample_args(&args(&["--interval", "250ms"])).unwrap();
        assert_eq!(d, Duration::from_millis(250));
        let (d, p) = parse_sample_args(&args(&["--interval", "1.5s", "--path", "/x"])).unwrap();
        assert_eq!((d, p), (Duration::from_millis(1500), PathBuf::from("/x")));
        assert!(parse_sample_args(&args(&["--interval", "x"])).is_err());
    }

    #[test]
    fn sample_is_sane() {
        let json = sample(Duration::from_millis(250), Path::new("/nonexistent/dir")).unwrap();
        let s: distctl_proto::metrics::MetricsSample = serde_json::from_str(&json).unwrap();
        assert!(s.mem_used_mib.unwrap() <= s.mem_total_mib.unwrap());
        let cpu = s.cpu_pct.unwrap();
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(s.cores.unwrap() >= 1);
        assert!(s.disk_used_gib.unwrap() <= s.disk_total_gib.unwrap());
    }
}
