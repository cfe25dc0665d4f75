//! Running distctl on a terminal, as a person does: `script` (util-linux)
//! gives the command a pseudo-terminal for stdin, stdout and stderr, and we
//! read what the terminal would show.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Terminal {
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Quote one word for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Terminal {
    /// Start `cmd` (program and arguments, its environment plus TERM) on a
    /// fresh pseudo-terminal 100 columns wide.
    pub fn spawn(cmd: &Command) -> Terminal {
        let mut line = String::from("stty cols 100 rows 40 2>/dev/null; exec");
        line.push(' ');
        line.push_str(&sh_quote(&cmd.get_program().to_string_lossy()));
        for a in cmd.get_args() {
            line.push(' ');
            line.push_str(&sh_quote(&a.to_string_lossy()));
        }
        let mut script = Command::new("script");
        script.args(["-qfec", &line, "/dev/null"]);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            script.current_dir(dir);
        }
        let mut child = script
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script (util-linux) must be installed");
        let mut out = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            seen,
            reader: Some(reader),
        }
    }

    /// Everything the terminal has shown so far, as text.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Wait until the terminal has shown `text` (panics after `limit`).
    pub fn wait_for(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.screen().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {text:?}; it showed:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the command to end: its exit status and all it showed.
    pub fn finish(mut self) -> (ExitStatus, String) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.screen())
    }
}

/// What stays on the screen: each line as last drawn (the text after its
/// last carriage return / erase-line), escapes removed.
pub fn final_lines(screen: &str) -> Vec<String> {
    screen
        .split('\n')
        .map(|l| {
            let l = l.trim_end_matches('\r');
            let l = l.rsplit('\r').next().unwrap_or(l);
            l.replace("\x1b[2K", "").replace("\x1b[1A", "")
        })
        .filter(|l| !l.trim().is_empty())
        .collect()
}
