//! Waiting for a benchmarked `distctl` and taking its CPU apart.
//!
//! wait4's rusage counts a process together with every child it has
//! reaped. `distctl` reaps its ssh masters' first halves: `ssh -f` does the
//! key exchange and logs in, then forks the master off and exits. A cold
//! run's three key exchanges (0.06–0.12 CPU-s each with OpenSSH 9.2's
//! default `sntrup761x25519-sha512`) would count as distctl's own. So the
//! exited process is read before it is reaped: its own time and its reaped
//! children's stand apart in `/proc/PID/stat`.

use std::process::Child;

/// How a waited-for process ended and what it cost.
pub struct Reaped {
    /// The wait status (for `libc::WIFEXITED` and friends).
    pub status: i32,
    /// CPU seconds of the process itself (user + system, all its threads).
    pub own_cpu: f64,
    /// Peak RSS in KiB, of the process or one of its reaped children
    /// (wait4's `ru_maxrss`; the ssh processes stay far below distctl).
    /// The shaped-link bench does not report it.
    #[allow(dead_code)]
    pub max_rss_kib: u64,
}

/// Wait for `child` to exit, read its CPU while it is a zombie, then reap it.
pub fn wait_reaped(child: Child) -> Reaped {
    let pid = child.id() as libc::pid_t;
    // SAFETY: siginfo_t is plain data; waitid with WNOWAIT leaves the
    // child a zombie, so its /proc entry still holds its times.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        let e = std::io::Error::last_os_error();
        if rc == 0 {
            break;
        }
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "waitid: {e}");
    }
    let own_cpu = own_time(pid);
    let mut status = 0;
    // SAFETY: rusage is plain data filled by wait4 for our own child, which
    // has exited: it returns at once.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    std::mem::forget(child);
    Reaped {
        status,
        own_cpu,
        max_rss_kib: ru.ru_maxrss as u64,
    }
}

/// The process's own CPU seconds from `/proc/PID/stat`: utime and stime,
/// in clock ticks (cutime and cstime, after them, are its reaped children's).
fn own_time(pid: libc::pid_t) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; the fields after it do not.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // Fields 14 and 15 of proc_pid_stat(5); `after` starts at field 3.
    (f[11] + f[12]) / hz
}
