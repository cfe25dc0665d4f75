//! Generated bench inputs, the same bytes on every run: word text and an
//! Apache combined access log (shared by the `run` and `shaped_link` benches).

use std::fmt::Write as _;
use std::path::Path;

/// Text lines of mixed-case words, `size` bytes (a 4 MiB block repeated).
pub fn make_input(path: &Path, size: u64) {
    let mut block = Vec::with_capacity(4 << 20);
    let mut x: u64 = 0x2545f4914f6cdd1d;
    while block.len() < (4 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = (x >> 32) as u8;
        block.push(match b % 12 {
            0 => b'\n',
            1 | 2 => b' ',
            3 => b'A' + b % 26,
            _ => b'a' + b % 26,
        });
    }
    *block.last_mut().unwrap() = b'\n';
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        std::io::Write::write_all(&mut f, &block[..n]).unwrap();
        left -= n as u64;
    }
}

/// A small xorshift generator: the same input on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Index in `0..n` with a Zipf-like skew (rank r drawn ∝ 1/r).
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        // Inverse of the continuous 1/x law on [1, n+1).
        ((n as f64 + 1.0).powf(u) - 1.0).floor().min(n as f64 - 1.0) as usize
    }
}

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "Prometheus/2.51.0",
    "kube-probe/1.29",
    "Apache-HttpClient/4.5.14 (Java/17.0.10)",
    "okhttp/4.12.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:124.0) Gecko/20100101 Firefox/124.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0",
    "Mozilla/5.0 (iPad; CPU OS 16_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Twitterbot/1.0",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Uptime-Kuma/1.23.11",
    "Datadog Agent/7.52.0",
    "ELB-HealthChecker/2.0",
    "Mozilla/5.0 zgrab/0.x",
];

/// Apache combined log lines, `size` bytes: client IPs from a pool of 20,000
/// with a Zipf-like skew, timestamps that advance by 0-2 s, 3,000 paths with
/// Zipf popularity (some with a query string), methods, statuses weighted as
/// real sites see them, response sizes, referrers and a few dozen agents.
pub fn make_access_log(path: &Path, size: u64) {
    const IPS: usize = 20_000;
    const PATHS: usize = 3_000;
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let ips: Vec<String> = (0..IPS)
        .map(|_| {
            let x = rng.next();
            format!(
                "{}.{}.{}.{}",
                1 + (x >> 8) % 223,
                (x >> 16) & 255,
                (x >> 24) & 255,
                1 + (x >> 32) % 254
            )
        })
        .collect();
    const SECTIONS: &[&str] = &[
        "", "static", "api/v1", "api/v2", "blog", "products", "images", "docs", "user", "search",
    ];
    const EXTS: &[&str] = &[
        "", ".html", ".css", ".js", ".png", ".jpg", ".json", ".svg", ".woff2",
    ];
    let paths: Vec<String> = (0..PATHS)
        .map(|i| {
            let x = rng.next();
            let section = SECTIONS[(x % SECTIONS.len() as u64) as usize];
            let ext = EXTS[((x >> 8) % EXTS.len() as u64) as usize];
            let mut p = if section.is_empty() {
                format!("/page-{i}{ext}")
            } else {
                format!("/{section}/item-{}{ext}", (x >> 16) % 5_000)
            };
            if (x >> 40).is_multiple_of(7) {
                p.push_str(&format!("?id={}&ref=nav", (x >> 44) % 100_000));
            }
            p
        })
        .collect();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // 2024-03-01 00:00:00 +0000, in seconds since the start of the year.
    let mut t: u64 = 60 * 86_400;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut written = 0u64;
    let mut line = String::with_capacity(512);
    while written < size {
        let x = rng.next();
        t += x % 3;
        let (mut day, secs) = (t / 86_400, t % 86_400);
        let mut month = 0;
        for (m, len) in [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
            .into_iter()
            .enumerate()
        {
            if day < len {
                month = m;
                break;
            }
            day -= len;
        }
        let ip = &ips[rng.zipf(IPS)];
        let p = &paths[rng.zipf(PATHS)];
        let method = match x % 20 {
            0..=15 => "GET",
            16 | 17 => "POST",
            18 => "HEAD",
            _ => "PUT",
        };
        let status = match (x >> 8) % 100 {
            0..=79 => 200,
            80..=86 => 304,
            87..=90 => 301,
            91..=95 => 404,
            96 | 97 => 302,
            98 => 500,
            _ => 403,
        };
        let bytes = if status == 304 {
            0
        } else {
            200 + (x >> 16) % 60_000
        };
        let referrer = match (x >> 32) % 4 {
            0 => "-".to_string(),
            1 => "https://www.google.com/".to_string(),
            _ => format!("https://example.com{}", paths[rng.zipf(PATHS)]),
        };
        let agent = AGENTS[rng.zipf(AGENTS.len())];
        line.clear();
        let _ = writeln!(
            line,
            "{ip} - - [{:02}/{}/2024:{:02}:{:02}:{:02} +0000] \"{method} {p} HTTP/1.1\" {status} {bytes} \"{referrer}\" \"{agent}\"",
            day + 1,
            MONTHS[month],
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
        );
        let take = (size - written).min(line.len() as u64) as usize;
        if take < line.len() {
            // The last line is cut to fit, and still ends with a newline
            // (the seed's `split -l` would drop an unterminated one).
            line.truncate(take.saturating_sub(1));
            line.push('\n');
        }
        std::io::Write::write_all(&mut out, &line.as_bytes()[..take]).unwrap();
        written += take as u64;
    }
    std::io::Write::flush(&mut out).unwrap();
}
