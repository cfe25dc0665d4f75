//! The `sync_status` stamp `distctl sync` leaves in each node's workdir, and
//! how `status` judges from all nodes' stamps whether each node holds the
//! last synced content.
//!
//! The file is `key=value` lines: time (RFC 3339, UTC), checksum (of the
//! synced tree's content), dest, then source (`host:/path`, may hold spaces).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub time: String,
    pub checksum: String,
    pub dest: String,
    pub source: String,
}

const KEYS: [&str; 4] = ["time=", "checksum=", "dest=", "source="];

impl Stamp {
    /// The file's text.
    pub fn render(&self) -> String {
        format!(
            "time={}\nchecksum={}\ndest={}\nsource={}\n",
            self.time, self.checksum, self.dest, self.source
        )
    }

    /// Parse the file's text, as is or with its lines joined by spaces (as
    /// `status`'s probe prints it).
    pub fn parse(text: &str) -> Option<Stamp> {
        let text = text.trim();
        let mut at = Vec::new();
        for key in KEYS {
            let pos = text.find(key)?;
            at.push((pos, key));
        }
        at.sort();
        let value = |key: &str| -> String {
            let i = at.iter().position(|(_, k)| *k == key).expect("known key");
            let start = at[i].0 + key.len();
            let end = at.get(i + 1).map_or(text.len(), |(p, _)| *p);
            text[start..end].trim().to_string()
        };
        Some(Stamp {
            time: value("time="),
            checksum: value("checksum="),
            dest: value("dest="),
            source: value("source="),
        })
    }
}

/// For each node's stamp (None: no stamp, or node not probed), whether it
/// holds the content of the newest stamp of all (same source and checksum;
/// the destination may differ, as workdirs may): `in sync`, `out of sync` or, when some
/// node has been synced and this one never, `never synced`. All None when no
/// node has a stamp.
pub fn states(stamps: &[Option<Stamp>]) -> Vec<Option<&'static str>> {
    // Compared as times, not strings: stamps carry nanoseconds (two syncs
    // often fall in one second), older ones only seconds.
    let when = |s: &Stamp| humantime::parse_rfc3339(&s.time).ok();
    let newest = stamps.iter().flatten().max_by_key(|s| when(s));
    stamps
        .iter()
        .map(|s| {
            let newest = newest?;
            Some(match s {
                None => "never synced",
                Some(s) if s.checksum == newest.checksum && s.source == newest.source => "in sync",
                Some(_) => "out of sync",
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(time: &str, sum: &str) -> Stamp {
        Stamp {
            time: time.into(),
            checksum: sum.into(),
            dest: ".distctl/my app".into(),
            source: "host:/home/me/my app".into(),
        }
    }

    #[test]
    fn round_trips_as_lines_and_joined() {
        let s = stamp("2026-11-23T12:00:00Z", "sha256:ab");
        assert_eq!(Stamp::parse(&s.render()), Some(s.clone()));
        assert_eq!(Stamp::parse(&s.render().replace('\n', " ")), Some(s));
        assert_eq!(Stamp::parse("garbage"), None);
    }

    #[test]
    fn the_newest_stamp_decides() {
        let st = states(&[
            Some(stamp("2026-11-23T12:00:00Z", "sha256:new")),
            Some(stamp("2026-11-23T11:00:00Z", "sha256:old")),
            Some(stamp("2026-11-23T11:00:00Z", "sha256:new")),
            None,
        ]);
        assert_eq!(
            st,
            [
                Some("in sync"),
                Some("out of sync"),
                Some("in sync"),
                Some("never synced")
            ]
        );
        assert_eq!(states(&[None, None]), [None, None]);
    }

    #[test]
    fn two_syncs_in_one_second_are_told_apart() {
        let st = states(&[
            Some(stamp("2026-11-23T12:00:00.500000000Z", "sha256:new")),
            Some(stamp("2026-11-23T12:00:00.100000000Z", "sha256:old")),
            Some(stamp("2026-11-23T12:00:00Z", "sha256:older")),
        ]);
        assert_eq!(
            st,
            [Some("in sync"), Some("out of sync"), Some("out of sync")]
        );
    }
}
