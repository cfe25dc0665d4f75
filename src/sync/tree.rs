//! A directory tree as `sync` compares it: regular files, directories and
//! symlinks under a root, with what decides whether a remote copy is current
//! (type, permission bits, size, whole-second mtime, link target). The local
//! tree is scanned here; the remote one arrives as GNU `find -printf` output.
//! [`plan`] turns the two into what to remove and what to send.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the tree's root.
    pub path: PathBuf,
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub size: u64,
    /// Seconds since the epoch (tar keeps whole seconds).
    pub mtime: i64,
    pub target: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Tree {
    pub root: PathBuf,
    /// Sorted by path; parents before children.
    pub entries: Vec<Entry>,
    /// Sockets, FIFOs and devices: not synced.
    pub skipped: Vec<PathBuf>,
}

impl Tree {
    /// Walk `root` without following symlinks.
    pub fn scan(root: &Path) -> std::io::Result<Tree> {
        let mut tree = Tree {
            root: root.to_path_buf(),
            entries: Vec::new(),
            skipped: Vec::new(),
        };
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            let mut names: Vec<_> = std::fs::read_dir(&dir)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            for name in names.into_iter().rev() {
                let path = rel.join(&name);
                let meta = std::fs::symlink_metadata(root.join(&path))?;
                let ft = meta.file_type();
                let kind = if ft.is_file() {
                    Kind::File
                } else if ft.is_dir() {
                    stack.push(path.clone());
                    Kind::Dir
                } else if ft.is_symlink() {
                    Kind::Symlink
                } else {
                    tree.skipped.push(path);
                    continue;
                };
                tree.entries.push(Entry {
                    target: match kind {
                        Kind::Symlink => Some(std::fs::read_link(root.join(&path))?),
                        _ => None,
                    },
                    size: if kind == Kind::File { meta.len() } else { 0 },
                    mode: meta.permissions().mode() & 0o7777,
                    mtime: meta.mtime(),
                    path,
                    kind,
                });
            }
        }
        tree.entries
            .sort_by(|a, b| a.path.as_os_str().cmp(b.path.as_os_str()));
        Ok(tree)
    }

    /// SHA-256 over every entry's path, type, permission bits and content
    /// (link target for symlinks): equal trees have equal checksums whatever
    /// their mtimes.
    pub fn checksum(&self) -> std::io::Result<String> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        for e in &self.entries {
            let kind = match e.kind {
                Kind::File => b'f',
                Kind::Dir => b'd',
                Kind::Symlink => b'l',
            };
            h.update([kind]);
            h.update(e.path.as_os_str().as_bytes());
            h.update([0]);
            h.update(format!("{:o}\0", e.mode));
            match e.kind {
                Kind::File => {
                    h.update(e.size.to_le_bytes());
                    let mut f = std::fs::File::open(self.root.join(&e.path))?;
                    loop {
                        let n = f.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                }
                Kind::Symlink => {
                    if let Some(t) = &e.target {
                        h.update(t.as_os_str().as_bytes());
                    }
                }
                Kind::Dir => {}
            }
            h.update([0]);
        }
        let digest = h.finalize();
        Ok(format!(
            "sha256:{}",
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ))
    }
}

/// The remote command whose output [`parse_manifest`] reads: every entry
/// under the current directory as `TYPE MODE SIZE MTIME PATH\0TARGET\0`.
pub const MANIFEST_FIND: &str = r"find . -mindepth 1 -printf '%y %m %s %T@ %P\0%l\0'";

/// Parse [`MANIFEST_FIND`] output. Entries of other types (sockets, FIFOs)
/// are kept as files so that a local file in their place replaces them.
pub fn parse_manifest(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut fields = bytes.split(|&b| b == 0);
    let mut out = Vec::new();
    while let Some(head) = fields.next() {
        if head.is_empty() {
            break;
        }
        let target = fields.next().ok_or("manifest ends mid-entry")?;
        let mut parts = head.splitn(5, |&b| b == b' ');
        let mut next = || parts.next().ok_or("manifest entry has too few fields");
        let (ty, mode, size, mtime, path) = (next()?, next()?, next()?, next()?, next()?);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let kind = match ty {
            b"d" => Kind::Dir,
            b"l" => Kind::Symlink,
            _ => Kind::File,
        };
        let secs = mtime.split(|&b| b == b'.').next().unwrap_or(b"0");
        out.push(Entry {
            path: PathBuf::from(OsStr::from_bytes(path)),
            kind,
            mode: u32::from_str_radix(&text(mode), 8).map_err(|_| "bad mode in manifest")?,
            size: text(size).parse().map_err(|_| "bad size in manifest")?,
            mtime: text(secs).parse().map_err(|_| "bad mtime in manifest")?,
            target: (kind == Kind::Symlink).then(|| PathBuf::from(OsStr::from_bytes(target))),
        });
    }
    Ok(out)
}

/// What makes a remote tree equal to the local one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Remote paths to remove first (`rm -rf`; none is inside another).
    pub remove: Vec<PathBuf>,
    /// Indices into the local entries to send, parents before children.
    pub send: Vec<usize>,
    /// How many of `remove` are deletions of things gone locally (`--delete`)
    /// rather than replacements of a changed type.
    pub deleted: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.send.is_empty()
    }
}

/// Compare `local` with the `remote` manifest. Without `delete`, remote
/// entries missing locally stay; `keep` names top-level remote entries that
/// are never touched (distctl's own files when syncing into the workdir).
pub fn plan(local: &Tree, remote: &[Entry], delete: bool, keep: &[&str]) -> Plan {
    let kept = |p: &Path| {
        p.components()
            .next()
            .is_some_and(|c| keep.iter().any(|k| OsStr::new(k) == c.as_os_str()))
    };
    let by_path: HashMap<&Path, &Entry> = remote.iter().map(|e| (e.path.as_path(), e)).collect();
    let mut replace = Vec::new();
    let mut plan = Plan::default();
    for (i, l) in local.entries.iter().enumerate() {
        let send = match by_path.get(l.path.as_path()) {
            None => true,
            Some(r) if r.kind != l.kind || l.kind == Kind::Symlink && r.target != l.target => {
                replace.push(l.path.clone());
                true
            }
            Some(r) => match l.kind {
                Kind::File => r.size != l.size || r.mtime != l.mtime || r.mode != l.mode,
                Kind::Dir => r.mode != l.mode,
                Kind::Symlink => false,
            },
        };
        if send {
            plan.send.push(i);
        }
    }
    let mut gone = Vec::new();
    if delete {
        let local_paths: BTreeSet<&Path> = local.entries.iter().map(|e| e.path.as_path()).collect();
        gone = remote
            .iter()
            .map(|e| e.path.clone())
            .filter(|p| !local_paths.contains(p.as_path()) && !kept(p))
            .collect();
    }
    let mut all: Vec<(PathBuf, bool)> = replace
        .into_iter()
        .map(|p| (p, false))
        .chain(gone.into_iter().map(|p| (p, true)))
        .collect();
    all.sort();
    for (p, deleted) in all {
        if plan.remove.iter().any(|r| p.starts_with(r)) {
            continue;
        }
        plan.deleted += deleted as usize;
        plan.remove.push(p);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn entry(path: &str, kind: Kind, mode: u32, size: u64, mtime: i64) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode,
            size,
            mtime,
            target: None,
        }
    }

    #[test]
    fn manifest_parses_find_output() {
        let out = b"d 755 4096 1700000000.5 sub dir\0\0f 644 3 1700000001.0000000000 sub dir/a b\0\0l 777 5 1700000002.1 ln\0a b c\0";
        let m = parse_manifest(out).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0],
            entry("sub dir", Kind::Dir, 0o755, 4096, 1_700_000_000)
        );
        assert_eq!(
            m[1],
            entry("sub dir/a b", Kind::File, 0o644, 3, 1_700_000_001)
        );
        assert_eq!(m[2].target.as_deref(), Some(Path::new("a b c")));
        assert!(parse_manifest(b"").unwrap().is_empty());
        assert!(parse_manifest(b"f 644 1 1 x").is_err());
        assert!(parse_manifest(b"f 644 1\0\0").is_err());
    }

    #[test]
    fn scan_checksum_and_plan() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f.txt"), "hello").unwrap();
        std::fs::write(root.join("x"), "x").unwrap();
        symlink("a/b/f.txt", root.join("link")).unwrap();
        let tree = Tree::scan(root).unwrap();
        let paths: Vec<_> = tree
            .entries
            .iter()
            .map(|e| e.path.to_str().unwrap())
            .collect();
        assert_eq!(paths, ["a", "a/b", "a/b/f.txt", "link", "x"]);
        let sum = tree.checksum().unwrap();
        assert!(sum.starts_with("sha256:") && sum.len() == 71);

        // Remote empty: send everything, parents first.
        let p = plan(&tree, &[], true, &[]);
        assert_eq!(p.send, [0, 1, 2, 3, 4]);
        assert!(p.remove.is_empty());

        // Remote equal: nothing to do.
        let same = tree.entries.clone();
        assert!(plan(&tree, &same, true, &[]).is_empty());

        // Changed file, retargeted link, extra remote files, a kept name.
        let mut remote = tree.entries.clone();
        remote[2].size = 9;
        remote[3].target = Some("elsewhere".into());
        remote.push(entry("old", Kind::Dir, 0o755, 0, 0));
        remote.push(entry("old/inner", Kind::File, 0o644, 1, 0));
        remote.push(entry("bin", Kind::Dir, 0o755, 0, 0));
        let p = plan(&tree, &remote, false, &["bin"]);
        assert_eq!(p.send, [2, 3]);
        assert_eq!(p.remove, [PathBuf::from("link")]);
        assert_eq!(p.deleted, 0);
        let p = plan(&tree, &remote, true, &["bin"]);
        assert_eq!(p.remove, [PathBuf::from("link"), PathBuf::from("old")]);
        assert_eq!(p.deleted, 1);

        // The checksum follows content and modes, not mtimes.
        std::fs::write(root.join("x"), "y").unwrap();
        assert_ne!(Tree::scan(root).unwrap().checksum().unwrap(), sum);
    }
}
