//! The cluster inventory (`cluster.toml`): schema, validation with file and
//! line in every error, range expansion, lookup order and node selection.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use crate::cluster::nodeset;
use crate::units::parse_duration;
use crate::usage;

/// How the host key of a node is checked (`host_key_checking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyChecking {
    /// Unknown or changed keys are refused (the default).
    Strict,
    /// Unknown keys are learned, changed keys refused.
    AcceptNew,
    /// No checking at all; distctl warns.
    Off,
}

impl HostKeyChecking {
    pub fn as_str(self) -> &'static str {
        match self {
            HostKeyChecking::Strict => "strict",
            HostKeyChecking::AcceptNew => "accept-new",
            HostKeyChecking::Off => "off",
        }
    }
}

/// One node with every setting resolved (node value, else `[defaults]`, else built-in).
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// `node` in `--json`, as everywhere.
    #[serde(rename = "node")]
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub workdir: String,
    /// Chunks run at once on this node; `None` means the node's core count.
    pub slots: Option<u32>,
    pub labels: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    pub host_key_checking: HostKeyChecking,
    pub known_hosts_file: Option<PathBuf>,
    pub ssh_options: Vec<String>,
    /// The jump host (`jump`) the node is reached through.
    pub jump: Option<Box<Jump>>,
    /// Keep the node's master connection up this long after a command
    /// (`persist`; `--persist` overrides), for the next one to reuse.
    #[serde(serialize_with = "ser_opt_duration")]
    pub persist: Option<Duration>,
    /// The built-in node: commands run here without SSH.
    pub local: bool,
    /// `compress`: how `run` compresses on the wire to this node (`None`:
    /// not set, auto unless `--compress` says otherwise).
    #[serde(serialize_with = "ser_compress")]
    pub compress: Option<distctl_proto::Compress>,
}

fn ser_compress<S: Serializer>(
    c: &Option<distctl_proto::Compress>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_str(&c.to_string()),
        None => s.serialize_none(),
    }
}

/// A jump host with its own connection settings: another inventory node's,
/// or an address (`user@host:port`) with the node's identity, known_hosts
/// and host-key policy.
#[derive(Debug, Clone, Serialize)]
pub struct Jump {
    /// The inventory node's name, or the address as written.
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub host_key_checking: HostKeyChecking,
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::units::Dur(*d).to_string())
}

pub const DEFAULT_WORKDIR: &str = ".distctl";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Node {
    fn builtin(name: &str, host: &str) -> Node {
        Node {
            name: name.to_string(),
            host: host.to_string(),
            port: None,
            user: None,
            identity_file: None,
            workdir: DEFAULT_WORKDIR.to_string(),
            slots: None,
            labels: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            host_key_checking: HostKeyChecking::Strict,
            known_hosts_file: None,
            ssh_options: Vec::new(),
            jump: None,
            persist: None,
            local: false,
            compress: None,
        }
    }

    /// The built-in node used when there is no inventory at all.
    pub fn local() -> Node {
        Node {
            local: true,
            ..Node::builtin("local", "localhost")
        }
    }

    /// `user@host:port` as a person would type it (for tables and messages).
    pub fn destination(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }
}

/// Where the inventory came from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Hosts(String),
    BuiltinLocal,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Hosts(h) => write!(f, "--hosts {h}"),
            Source::BuiltinLocal => f.write_str("built-in local node"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub source: Source,
    pub nodes: Vec<Node>,
    /// `[groups]`, each resolved to its node names.
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

/// One table of settings: `[defaults]` or a `[[nodes]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    user: Option<String>,
    identity_file: Option<String>,
    workdir: Option<String>,
    slots: Option<Spanned<i64>>,
    labels: Option<Vec<String>>,
    connect_timeout: Option<Spanned<String>>,
    host_key_checking: Option<Spanned<String>>,
    known_hosts_file: Option<String>,
    ssh_options: Option<Spanned<Vec<String>>>,
    jump: Option<Spanned<String>>,
    persist: Option<Spanned<String>>,
    compress: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    defaults: Option<Spanned<RawNode>>,
    nodes: Option<Spanned<Vec<Spanned<RawNode>>>>,
    groups: Option<BTreeMap<String, Spanned<RawGroup>>>,
}

/// A group's members: one set expression, or a list of them (unioned).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawGroup {
    One(String),
    Many(Vec<String>),
}

impl RawGroup {
    fn expressions(&self) -> Vec<&str> {
        match self {
            RawGroup::One(s) => vec![s.as_str()],
            RawGroup::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Locates problems in one inventory file: `path:line: message`.
struct Located<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Located<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: Range<usize>, msg: impl fmt::Display) -> anyhow::Error {
        usage!(
            "{}:{}: {}",
            self.path.display(),
            self.line_of(span.start),
            msg
        )
    }
}

/// Where the inventory comes from: an ad-hoc host list, a file, else the
/// lookup order of [`Inventory::load`]. `cli.rs` builds it from the flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// `--hosts`: `node[1-3],admin@db:2222`.
    pub hosts: Option<String>,
    /// `--inventory`.
    pub file: Option<PathBuf>,
}

/// Which nodes of the inventory a command works on (`--nodes`,
/// `--exclude`, `--label`); the default selects every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only these nodes (a node set such as `node[1-4,7],db`).
    pub nodes: Option<String>,
    /// Leave out these nodes (a node set).
    pub exclude: Option<String>,
    /// Only nodes carrying every one of these labels.
    pub labels: Vec<String>,
}

impl Inventory {
    /// Find and load the inventory the way every command does: the host
    /// list, the file, `$DISTCTL_INVENTORY`, `./cluster.toml`,
    /// `~/.config/distctl/cluster.toml`, `/etc/distctl/cluster.toml`, else
    /// the built-in `local` node.
    pub fn load(lookup: impl Into<Lookup>) -> Result<Inventory> {
        let lookup = lookup.into();
        if let Some(hosts) = &lookup.hosts {
            return Inventory::from_hosts(hosts);
        }
        if let Some(path) = &lookup.file {
            return Inventory::from_file(path);
        }
        if let Some(path) = std::env::var_os("DISTCTL_INVENTORY").filter(|p| !p.is_empty()) {
            return Inventory::from_file(Path::new(&path));
        }
        let mut candidates = vec![PathBuf::from("cluster.toml")];
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(Path::new(&home).join(".config/distctl/cluster.toml"));
        }
        candidates.push(PathBuf::from("/etc/distctl/cluster.toml"));
        for path in candidates {
            if path.is_file() {
                return Inventory::from_file(&path);
            }
        }
        Ok(Inventory {
            source: Source::BuiltinLocal,
            nodes: vec![Node::local()],
            groups: BTreeMap::new(),
        })
    }

    pub fn from_file(path: &Path) -> Result<Inventory> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage!("cannot read inventory {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let (nodes, groups) = parse_with_groups(path, &text, base)?;
        Ok(Inventory {
            source: Source::File(path.to_path_buf()),
            nodes,
            groups,
        })
    }

    /// `node[1-3],admin@db:2222`: one node per host, named by its host
    /// (with `:port` when two entries share a host).
    pub fn from_hosts(spec: &str) -> Result<Inventory> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        for item in nodeset::split_top(spec) {
            let (user, rest) = match item.rsplit_once('@') {
                Some((u, r)) => (Some(u.to_string()), r),
                None => (None, item),
            };
            let (hosts, port) = split_host_port(rest, item)?;
            for host in hosts {
                check_name(&host).map_err(|e| usage!("--hosts: {e}"))?;
                check_host(&host).map_err(|e| usage!("--hosts: {e}"))?;
                let mut node = Node::builtin(&host, &host);
                node.user = user.clone();
                node.port = port;
                if names.contains(&node.name) {
                    node.name = node.destination();
                }
                if !names.insert(node.name.clone()) {
                    return Err(usage!("--hosts: node '{}' is listed twice", node.name));
                }
                if names.len() > nodeset::MAX_NODES {
                    return Err(usage!("--hosts: more than {} nodes", nodeset::MAX_NODES));
                }
                nodes.push(node);
            }
        }
        if nodes.is_empty() {
            return Err(usage!("--hosts: no host given"));
        }
        Ok(Inventory {
            source: Source::Hosts(spec.to_string()),
            nodes,
            groups: BTreeMap::new(),
        })
    }

    /// Apply `--nodes`, `--exclude` and `--label`. Selecting nothing is a usage error.
    pub fn select(&self, selection: impl Into<Selection>) -> Result<Vec<Node>> {
        let selection = selection.into();
        let only = selection
            .nodes
            .as_deref()
            .map(|s| self.resolve_set("--nodes", s))
            .transpose()?;
        let except = selection
            .exclude
            .as_deref()
            .map(|s| self.resolve_set("--exclude", s))
            .transpose()?;
        let selected: Vec<Node> = self
            .nodes
            .iter()
            .filter(|n| only.as_ref().is_none_or(|o| o.contains(&n.name)))
            .filter(|n| except.as_ref().is_none_or(|x| !x.contains(&n.name)))
            .filter(|n| selection.labels.iter().all(|l| n.labels.contains(l)))
            .cloned()
            .collect();
        if selected.is_empty() {
            let what = match selection
                .labels
                .iter()
                .find(|l| !self.nodes.iter().any(|n| n.labels.contains(l)))
            {
                Some(l) => format!("no node carries label '{l}'"),
                None if !selection.labels.is_empty() => format!(
                    "no node carries every label of --label {} among the nodes --nodes/--exclude leave",
                    selection.labels.join(" --label ")
                ),
                None => "no node left after --nodes/--exclude".to_string(),
            };
            return Err(usage!(
                "no node selected: {what} (inventory: {})",
                self.source
            ));
        }
        Ok(selected)
    }

    /// The node names a `--nodes`/`--exclude` expression stands for: names,
    /// ranges, `@group`, `@label:NAME`, `@all` and the last command's
    /// outcomes (`@failed`, ...), joined by ClusterShell's operators.
    pub fn resolve_set(&self, flag: &str, expr: &str) -> Result<BTreeSet<String>> {
        let known: HashSet<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut log = None;
        let names = nodeset::evaluate(expr, |group| {
            if crate::cluster::history::OUTCOME_GROUPS.contains(&group) {
                let log = log.get_or_insert_with(|| {
                    crate::cluster::history::OutcomeLog::for_source(&self.source)
                        .and_then(|l| l.load())
                });
                return match log {
                    Ok(last) => last.group(group),
                    Err(e) => Err(format!("@{group}: {e:#}")),
                };
            }
            self.group(group)
        })
        .map_err(|e| usage!("{flag}: {e}"))?;
        if let Some(missing) = names.iter().find(|n| !known.contains(n.as_str())) {
            return Err(usage!(
                "{flag}: no node named '{missing}' in {}",
                self.source
            ));
        }
        Ok(names)
    }

    /// `@NAME`: an inventory group, `all`, `label:NAME`, else a label of that name.
    fn group(&self, name: &str) -> Result<BTreeSet<String>, String> {
        group_members(&self.nodes, &self.groups, name).unwrap_or_else(|| {
            let defined: Vec<&str> = self.groups.keys().map(String::as_str).collect();
            Err(format!(
                "unknown group '@{name}' ({}; a label works as @label:NAME)",
                if defined.is_empty() {
                    format!("{} defines no [groups]", self.source)
                } else {
                    format!("groups in {}: {}", self.source, defined.join(", "))
                }
            ))
        })
    }
}

/// The members of `@name` among `nodes` and the groups resolved so far;
/// `None` when nothing of that name exists.
fn group_members(
    nodes: &[Node],
    groups: &BTreeMap<String, BTreeSet<String>>,
    name: &str,
) -> Option<Result<BTreeSet<String>, String>> {
    let labelled = |label: &str| -> BTreeSet<String> {
        nodes
            .iter()
            .filter(|n| n.labels.iter().any(|l| l == label))
            .map(|n| n.name.clone())
            .collect()
    };
    if name == "all" {
        return Some(Ok(nodes.iter().map(|n| n.name.clone()).collect()));
    }
    if let Some(label) = name.strip_prefix("label:") {
        let set = labelled(label);
        return Some(if set.is_empty() {
            Err(format!("no node carries label '{label}' (@{name})"))
        } else {
            Ok(set)
        });
    }
    if let Some(set) = groups.get(name) {
        return Some(Ok(set.clone()));
    }
    let set = labelled(name);
    (!set.is_empty()).then_some(Ok(set))
}

/// Four dot-separated decimal octets, one of them with a leading zero
/// (`10.0.1.08`): resolvers read such octets as octal or refuse them.
fn padded_ipv4_octet(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        && parts.iter().any(|p| p.len() > 1 && p.starts_with('0'))
}

/// `host`, `host:port`, `node[1-3]:22`, an IPv6 address `::1`, or `[::1]:22`.
fn split_host_port(rest: &str, item: &str) -> Result<(Vec<String>, Option<u16>)> {
    let port_of = |p: &str| -> Result<u16> {
        p.parse()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| usage!("--hosts: bad port '{p}' in '{item}'"))
    };
    // An IPv6 literal: in brackets (with an optional port), or bare (no port).
    if let Some(inner) = rest
        .strip_prefix('[')
        .filter(|r| r.split(']').next().is_some_and(|a| a.contains(':')))
    {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| usage!("--hosts: unclosed '[' in '{item}'"))?;
        let port = match after {
            "" => None,
            p => Some(port_of(
                p.strip_prefix(':')
                    .ok_or_else(|| usage!("--hosts: bad address '{item}'"))?,
            )?),
        };
        return Ok((vec![addr.to_string()], port));
    }
    if rest.matches(':').count() > 1 {
        return Ok((vec![rest.to_string()], None));
    }
    let (pattern, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(port_of(p)?)),
        None => (rest, None),
    };
    let hosts = nodeset::expand_one(pattern).map_err(|e| usage!("--hosts: {e}"))?;
    Ok((hosts, port))
}

#[cfg(test)]
pub(crate) fn parse(path: &Path, text: &str, base: &Path) -> Result<Vec<Node>> {
    Ok(parse_with_groups(path, text, base)?.0)
}

type Groups = BTreeMap<String, BTreeSet<String>>;

fn parse_with_groups(path: &Path, text: &str, base: &Path) -> Result<(Vec<Node>, Groups)> {
    let loc = Located { path, text };
    let raw: RawInventory = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', " ");
        match e.span() {
            Some(span) => loc.err(span, msg),
            None => usage!("{}: {msg}", path.display()),
        }
    })?;
    let defaults = match raw.defaults {
        Some(d) => {
            if let Some(name) = &d.get_ref().name {
                return Err(loc.err(
                    name.span(),
                    "'name' belongs in a [[nodes]] entry, not [defaults]",
                ));
            }
            d.into_inner()
        }
        None => RawNode::default(),
    };
    let entries = match raw.nodes {
        Some(n) if !n.get_ref().is_empty() => n.into_inner(),
        Some(n) => return Err(loc.err(n.span(), "the node list is empty")),
        None => return Err(loc.err(0..0, "no [[nodes]] entry: the node list is empty")),
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut seen: std::collections::HashMap<String, Range<usize>> =
        std::collections::HashMap::new();
    let mut jumps: Vec<Option<Spanned<String>>> = Vec::new();
    for entry in entries {
        let span = entry.span();
        let entry = entry.into_inner();
        let name = entry
            .name
            .as_ref()
            .ok_or_else(|| loc.err(span.clone(), "node without a 'name'"))?;
        let names = nodeset::expand_one(name.get_ref()).map_err(|e| loc.err(name.span(), e))?;
        let hosts = match &entry.host {
            Some(h) => {
                let hosts = nodeset::expand_one(h.get_ref()).map_err(|e| loc.err(h.span(), e))?;
                if let Some(bad) = hosts.iter().find(|h| padded_ipv4_octet(h)) {
                    return Err(loc.err(
                        h.span(),
                        format!(
                            "host '{}' expands to '{bad}': a zero-padded octet in an IPv4 address is read as octal by resolvers; drop the padding in host (e.g. 10.0.1.[1-16])",
                            h.get_ref()
                        ),
                    ));
                }
                if hosts.len() != 1 && hosts.len() != names.len() {
                    return Err(loc.err(
                        h.span(),
                        format!(
                            "host '{}' expands to {} values but name '{}' to {}",
                            h.get_ref(),
                            hosts.len(),
                            name.get_ref(),
                            names.len()
                        ),
                    ));
                }
                Some(hosts)
            }
            None => None,
        };
        for (i, node_name) in names.iter().enumerate() {
            check_name(node_name).map_err(|e| loc.err(name.span(), e))?;
            if let Some(first) = seen.get(node_name) {
                return Err(loc.err(
                    name.span(),
                    format!(
                        "duplicate node name '{node_name}' (first defined on line {})",
                        loc.line_of(first.start)
                    ),
                ));
            }
            seen.insert(node_name.clone(), name.span());
            if seen.len() > nodeset::MAX_NODES {
                return Err(loc.err(
                    name.span(),
                    format!("more than {} nodes", nodeset::MAX_NODES),
                ));
            }
            let host = match &hosts {
                Some(h) if h.len() == 1 => h[0].clone(),
                Some(h) => h[i].clone(),
                None => defaults
                    .host
                    .as_ref()
                    .map(|h| h.get_ref().clone())
                    .unwrap_or_else(|| node_name.clone()),
            };
            let host_span = entry
                .host
                .as_ref()
                .or(defaults.host.as_ref())
                .map_or_else(|| name.span(), |h| h.span());
            check_host(&host).map_err(|e| loc.err(host_span, e))?;
            let node = resolve(&loc, base, node_name, host, &entry, &defaults)?;
            if let Some(field) = node.nul_field() {
                return Err(loc.err(
                    name.span(),
                    format!("node '{node_name}': {field} contains a NUL character"),
                ));
            }
            nodes.push(node);
            jumps.push(pick(&entry.jump, &defaults.jump).cloned());
        }
    }
    resolve_jumps(&loc, &mut nodes, jumps)?;
    let groups = resolve_groups(&loc, raw.groups.unwrap_or_default(), &nodes)?;
    Ok((nodes, groups))
}

/// `jump = "NAME"` (another node) or `"user@host:port"`. A node that would
/// jump through itself (a `jump` in `[defaults]` naming it) is reached
/// directly; a jump host that needs a jump host of its own is refused.
fn resolve_jumps(
    loc: &Located,
    nodes: &mut [Node],
    jumps: Vec<Option<Spanned<String>>>,
) -> Result<()> {
    let settings: Vec<Node> = nodes.to_vec();
    let raw: Vec<Option<String>> = jumps
        .iter()
        .map(|j| j.as_ref().map(|s| s.get_ref().trim().to_string()))
        .collect();
    for (node, jump) in nodes.iter_mut().zip(jumps) {
        let Some(jump) = jump else { continue };
        let value = jump.get_ref().trim();
        if value == node.name {
            continue;
        }
        let resolved = match settings.iter().position(|n| n.name == value) {
            Some(i) => {
                let via = &settings[i];
                if via.local {
                    return Err(loc.err(jump.span(), "the local node cannot be a jump host"));
                }
                if raw[i].as_deref().is_some_and(|j| j != via.name) {
                    return Err(loc.err(
                        jump.span(),
                        format!("jump host '{value}' has a jump host of its own (chains are not supported)"),
                    ));
                }
                Jump {
                    name: via.name.clone(),
                    host: via.host.clone(),
                    port: via.port,
                    user: via.user.clone(),
                    identity_file: via.identity_file.clone(),
                    known_hosts_file: via.known_hosts_file.clone(),
                    host_key_checking: via.host_key_checking,
                }
            }
            None => {
                let (user, host, port) =
                    parse_address(value).map_err(|e| loc.err(jump.span(), e))?;
                Jump {
                    name: value.to_string(),
                    host,
                    port,
                    user,
                    identity_file: node.identity_file.clone(),
                    known_hosts_file: node.known_hosts_file.clone(),
                    host_key_checking: node.host_key_checking,
                }
            }
        };
        node.jump = Some(Box::new(resolved));
    }
    Ok(())
}

/// `[user@]host[:port]`, with `[v6]:port` for IPv6.
fn parse_address(s: &str) -> Result<(Option<String>, String, Option<u16>), String> {
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
        Some(_) => return Err(format!("bad jump host '{s}' (empty user)")),
        None => (None, s),
    };
    let port_of = |p: &str| -> Result<u16, String> {
        p.parse()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("bad port '{p}' in jump host '{s}'"))
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in jump host '{s}'"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(port_of(p)?),
            None if after.is_empty() => None,
            None => return Err(format!("bad jump host '{s}'")),
        };
        (addr.to_string(), port)
    } else if rest.matches(':').count() == 1 {
        let (h, p) = rest.split_once(':').expect("one colon");
        (h.to_string(), Some(port_of(p)?))
    } else {
        (rest.to_string(), None)
    };
    if check_host(&host).is_err() || host.contains(['[', ']']) {
        return Err(format!(
            "bad jump host '{s}' (not an inventory node; expected NAME or user@host:port)"
        ));
    }
    Ok((user, host, port))
}

/// Resolve `[groups]` to node names, each group after the groups it names;
/// a cycle, an unknown group or node, or a recorded outcome is an error at
/// the group's line.
fn resolve_groups(
    loc: &Located,
    raw: BTreeMap<String, Spanned<RawGroup>>,
    nodes: &[Node],
) -> Result<Groups> {
    let known: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    // The groups each one names (only those defined in [groups]).
    let mut refs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in &raw {
        let bad_name = name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if bad_name {
            return Err(loc.err(
                value.span(),
                format!("bad group name '{name}' (letters, digits, '_', '-', '.')"),
            ));
        }
        if name == "all" || crate::cluster::history::OUTCOME_GROUPS.contains(&name.as_str()) {
            return Err(loc.err(
                value.span(),
                format!("group name '{name}' is reserved (@{name} is built in)"),
            ));
        }
        let mut uses = Vec::new();
        for expr in value.get_ref().expressions() {
            let terms = nodeset::parse_expr(expr)
                .map_err(|e| loc.err(value.span(), format!("group '{name}': {e}")))?;
            for (_, term) in terms {
                if let nodeset::Term::Group(g) = term {
                    if crate::cluster::history::OUTCOME_GROUPS.contains(&g) {
                        return Err(loc.err(
                            value.span(),
                            format!("group '{name}': @{g} cannot be part of a group (it changes with every command)"),
                        ));
                    }
                    if let Some((k, _)) = raw.get_key_value(g) {
                        uses.push(k.as_str());
                    }
                }
            }
        }
        refs.insert(name.as_str(), uses);
    }
    let mut done: Groups = BTreeMap::new();
    while done.len() < raw.len() {
        let ready: Vec<&str> = refs
            .iter()
            .filter(|(g, uses)| {
                !done.contains_key(**g) && uses.iter().all(|u| done.contains_key(*u))
            })
            .map(|(g, _)| *g)
            .collect();
        if ready.is_empty() {
            let (start, cycle) = find_cycle(&refs, &done);
            return Err(loc.err(
                raw[start].span(),
                format!("group cycle: {}", cycle.join(" → @")),
            ));
        }
        for name in ready {
            let value = &raw[name];
            let mut members = BTreeSet::new();
            for expr in value.get_ref().expressions() {
                let set = nodeset::evaluate(expr, |g| {
                    group_members(nodes, &done, g)
                        .unwrap_or_else(|| Err(format!("unknown group '@{g}'")))
                })
                .map_err(|e| loc.err(value.span(), format!("group '{name}': {e}")))?;
                if let Some(missing) = set.iter().find(|n| !known.contains(n.as_str())) {
                    return Err(loc.err(
                        value.span(),
                        format!("group '{name}': no node named '{missing}'"),
                    ));
                }
                members.extend(set);
            }
            done.insert(name.to_string(), members);
        }
    }
    Ok(done)
}

/// A cycle among the unresolved groups, as `a → @b → @a` (first name first).
fn find_cycle<'a>(
    refs: &BTreeMap<&'a str, Vec<&'a str>>,
    done: &Groups,
) -> (&'a str, Vec<&'a str>) {
    let start = refs
        .keys()
        .find(|g| !done.contains_key(**g))
        .copied()
        .expect("an unresolved group");
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next = refs[at]
            .iter()
            .copied()
            .find(|u| !done.contains_key(*u))
            .expect("an unresolved group names another");
        if let Some(i) = path.iter().position(|p| *p == next) {
            let mut cycle = path[i..].to_vec();
            cycle.push(next);
            return (cycle[0], cycle);
        }
        path.push(next);
        at = next;
    }
}

impl Node {
    /// The setting holding a NUL, if any: no command line or path can carry
    /// one, so it is refused where it enters.
    fn nul_field(&self) -> Option<&'static str> {
        let nul = |s: &str| s.contains('\0');
        let path_nul = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| nul(&p.to_string_lossy()));
        [
            ("host", nul(&self.host)),
            ("user", self.user.as_deref().is_some_and(nul)),
            ("workdir", nul(&self.workdir)),
            ("identity_file", path_nul(&self.identity_file)),
            ("known_hosts_file", path_nul(&self.known_hosts_file)),
            ("ssh_options", self.ssh_options.iter().any(|o| nul(o))),
            ("labels", self.labels.iter().any(|o| nul(o))),
        ]
        .into_iter()
        .find_map(|(field, bad)| bad.then_some(field))
    }
}

/// A host goes to ssh on its command line and in a `Host` line of the
/// generated config: a leading `-` would be read as an option, and
/// whitespace, control characters and ssh_config's pattern characters
/// cannot stand in a `Host` line. Refused when the inventory is read, not
/// when the node is reached; the ssh config writer checks again.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host".into());
    }
    if host.starts_with('-') {
        return Err(format!(
            "host '{host}' starts with '-', which ssh would read as an option"
        ));
    }
    if let Some(c) = host
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || "*?!,\"#".contains(c))
    {
        return Err(format!(
            "host '{host}' contains {c:?}, which cannot stand in an ssh config"
        ));
    }
    Ok(())
}

/// A node name also names local paths (`fetch` writes `LOCAL_DIR/<name>`)
/// and appears on command lines: `.`, `..`, a leading `-` and `/` are out.
fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("empty node name".into());
    }
    if name == "." || name == ".." {
        return Err(format!("node name '{name}' is not allowed"));
    }
    if name.starts_with('-') {
        return Err(format!(
            "node name '{name}' starts with '-', which is not allowed"
        ));
    }
    // `,!&^` are the set operators of --nodes, a leading `@` names a group.
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || matches!(c, '/' | ',' | '!' | '&' | '^'))
    {
        return Err(format!(
            "node name '{name}' contains {c:?}, which is not allowed"
        ));
    }
    if name.starts_with('@') {
        return Err(format!(
            "node name '{name}' starts with '@', which names a group"
        ));
    }
    Ok(())
}

/// A node's own value, else the default's.
fn pick<'a, T>(node: &'a Option<T>, defaults: &'a Option<T>) -> Option<&'a T> {
    node.as_ref().or(defaults.as_ref())
}

fn resolve(
    loc: &Located,
    base: &Path,
    name: &str,
    host: String,
    n: &RawNode,
    d: &RawNode,
) -> Result<Node> {
    let port = match pick(&n.port, &d.port) {
        Some(p) => {
            let v = *p.get_ref();
            if !(1..=65535).contains(&v) {
                return Err(loc.err(p.span(), format!("bad port {v} (must be 1-65535)")));
            }
            Some(v as u16)
        }
        None => None,
    };
    let slots = match pick(&n.slots, &d.slots) {
        Some(s) => {
            let v = *s.get_ref();
            if !(1..=4096).contains(&v) {
                return Err(loc.err(s.span(), format!("bad slots {v} (must be 1-4096)")));
            }
            Some(v as u32)
        }
        None => None,
    };
    let connect_timeout = match pick(&n.connect_timeout, &d.connect_timeout) {
        Some(t) => {
            let dur = parse_duration(t.get_ref()).map_err(|e| loc.err(t.span(), e))?;
            if dur < Duration::from_secs(1) {
                return Err(loc.err(t.span(), "connect_timeout must be at least 1s"));
            }
            dur
        }
        None => DEFAULT_CONNECT_TIMEOUT,
    };
    let host_key_checking = match pick(&n.host_key_checking, &d.host_key_checking) {
        Some(h) => match h.get_ref().as_str() {
            "strict" => HostKeyChecking::Strict,
            "accept-new" => HostKeyChecking::AcceptNew,
            "off" => HostKeyChecking::Off,
            other => {
                return Err(loc.err(
                    h.span(),
                    format!(
                    "bad host_key_checking '{other}' (use \"strict\", \"accept-new\" or \"off\")"
                ),
                ))
            }
        },
        None => HostKeyChecking::Strict,
    };
    let ssh_options = match pick(&n.ssh_options, &d.ssh_options) {
        Some(o) => {
            for opt in o.get_ref() {
                let ok = opt.split_once('=').is_some_and(|(k, v)| {
                    !k.trim().is_empty() && !v.trim().is_empty() && !k.contains(char::is_whitespace)
                });
                if !ok || opt.contains('\n') {
                    return Err(loc.err(
                        o.span(),
                        format!("bad ssh option '{opt}' (expected \"Key=Value\")"),
                    ));
                }
            }
            o.get_ref().clone()
        }
        None => Vec::new(),
    };
    let compress = match pick(&n.compress, &d.compress) {
        Some(c) => {
            Some(distctl_proto::Compress::parse(c.get_ref()).map_err(|e| loc.err(c.span(), e))?)
        }
        None => None,
    };
    if host.trim().is_empty() {
        return Err(loc.err(n.host.as_ref().map_or(0..0, |h| h.span()), "empty host"));
    }
    let persist = match pick(&n.persist, &d.persist) {
        Some(t) => {
            let dur = parse_duration(t.get_ref()).map_err(|e| loc.err(t.span(), e))?;
            (!dur.is_zero()).then_some(dur)
        }
        None => None,
    };
    let local_path = |p: &String| -> PathBuf {
        match p.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from(p), |h| Path::new(&h).join(rest)),
            None => base.join(p),
        }
    };
    Ok(Node {
        name: name.to_string(),
        host,
        port,
        user: pick(&n.user, &d.user).cloned(),
        identity_file: pick(&n.identity_file, &d.identity_file).map(local_path),
        workdir: pick(&n.workdir, &d.workdir)
            .cloned()
            .unwrap_or_else(|| DEFAULT_WORKDIR.to_string()),
        slots,
        labels: pick(&n.labels, &d.labels).cloned().unwrap_or_default(),
        connect_timeout,
        host_key_checking,
        known_hosts_file: pick(&n.known_hosts_file, &d.known_hosts_file).map(local_path),
        ssh_options,
        jump: None,
        persist,
        local: false,
        compress,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Random and near-TOML text never panics the parser.
        #[test]
        fn random_inventories_never_panic(
            text in "(\\[\\[nodes\\]\\]\n|\\[defaults\\]\n|name = \"[a-z\\[\\]0-9,-]{0,8}\"\n|port = [0-9]{1,6}\n|host = \"[a-z.\\[\\]0-9-]{0,8}\"\n|slots = -?[0-9]{1,3}\n|[ -~]{0,12}\n){0,10}"
        ) {
            let _ = parse_str(&text);
        }
    }

    fn parse_str(text: &str) -> Result<Vec<Node>> {
        parse(Path::new("c.toml"), text, Path::new("/base"))
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse_str(text).unwrap_err())
    }

    #[test]
    fn names_that_are_paths_or_flags_and_nul_are_refused() {
        for bad in [".", "..", "-oProxyCommand=x", "a/b"] {
            let err = parse_str(&format!("[[nodes]]\nname = {bad:?}\n"))
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains(":2:") && err.contains("not allowed"),
                "{bad}: {err}"
            );
            let err = Inventory::from_hosts(bad).err().unwrap().to_string();
            assert!(
                err.contains("--hosts") && err.contains("not allowed"),
                "{bad}: {err}"
            );
        }
        let err = parse_str("[[nodes]]\nname = \"a\"\nworkdir = \"w\\u0000x\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("workdir contains a NUL"), "{err}");
    }

    #[test]
    fn huge_node_sets_are_refused_and_big_ones_are_fast() {
        let err = Inventory::from_hosts("a[1-100000]b[1-100000]")
            .err()
            .unwrap();
        assert_eq!(crate::exit::exit_for(&err), crate::exit::Exit::Usage);
        assert!(err.to_string().contains("more than 100000"), "{err}");
        let t = std::time::Instant::now();
        assert_eq!(
            Inventory::from_hosts("n[1-40000]").unwrap().nodes.len(),
            40000
        );
        assert_eq!(
            nodeset::expand("n[1-40000],n[1-40000]").unwrap().len(),
            40000
        );
        assert!(
            // Generous for a loaded debug build; a quadratic expansion
            // takes minutes.
            t.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let nodes = parse_str(
            "[defaults]\nuser = \"ops\"\nport = 2222\nlabels = [\"a\"]\n\n[[nodes]]\nname = \"n[1-2]\"\nhost = \"10.0.0.[1-2]\"\n\n[[nodes]]\nname = \"db\"\nport = 22\nidentity_file = \"keys/id\"\n",
        )
        .unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[1].host, "10.0.0.2");
        assert_eq!(nodes[1].port, Some(2222));
        assert_eq!(nodes[2].port, Some(22));
        assert_eq!(nodes[2].host, "db");
        assert_eq!(nodes[2].user.as_deref(), Some("ops"));
        assert_eq!(
            nodes[2].identity_file.as_deref(),
            Some(Path::new("/base/keys/id"))
        );
        assert_eq!(nodes[0].workdir, ".distctl");
        assert_eq!(nodes[0].host_key_checking, HostKeyChecking::Strict);
    }

    #[test]
    fn selection_without_the_command_line() {
        let inv = Inventory::load(Lookup {
            hosts: Some("n[1-4]".into()),
            file: None,
        })
        .unwrap();
        let names = |sel: Selection| -> Vec<String> {
            inv.select(sel)
                .unwrap()
                .into_iter()
                .map(|n| n.name)
                .collect()
        };
        assert_eq!(names(Selection::default()).len(), 4);
        let sel = Selection {
            nodes: Some("n[1-3]".into()),
            exclude: Some("n2".into()),
            labels: vec![],
        };
        assert_eq!(names(sel), ["n1", "n3"]);
        let none = Selection {
            labels: vec!["gpu".into()],
            ..Selection::default()
        };
        let e = inv.select(none).unwrap_err().to_string();
        assert!(e.contains("no node carries label 'gpu'"), "{e}");
    }

    #[test]
    fn zero_padded_ipv4_octets_are_refused_with_the_line() {
        let e = err("[[nodes]]\nname = \"n[08-09]\"\nhost = \"10.0.1.[08-09]\"\n");
        assert!(e.starts_with("c.toml:3:") && e.contains("10.0.1.08"), "{e}");
        // Padding in names and in host names that are not addresses is fine.
        let nodes = parse_str("[[nodes]]\nname = \"n[08-09]\"\nhost = \"h[08-09].lan\"\n").unwrap();
        assert_eq!(nodes[0].host, "h08.lan");
        let example = include_str!("../../cluster.example.toml");
        parse_str(example).expect("the example inventory parses");
    }

    #[test]
    fn errors_name_file_and_line() {
        assert!(err("[[nodes]]\nname = \"a\"\nbogus = 1\n")
            .starts_with("c.toml:3: unknown field `bogus`"));
        assert!(err("[[nodes]]\nname = \"a\"\n[[nodes]]\nname = \"a\"\n")
            .starts_with("c.toml:4: duplicate node name 'a' (first defined on line 2)"));
        assert!(err("[defaults]\nuser = \"x\"\n").contains("node list is empty"));
        assert!(err("nodes = []\n").starts_with("c.toml:1: the node list is empty"));
        assert!(
            err("[[nodes]]\nname = \"a\"\nport = 70000\n").starts_with("c.toml:3: bad port 70000")
        );
        assert!(err("[[nodes]]\nname = \"n[5-1]\"\n").starts_with("c.toml:2: range '5-1'"));
        assert!(
            err("[[nodes]]\nname = \"a\"\nhost_key_checking = \"maybe\"\n")
                .starts_with("c.toml:3: bad host_key_checking")
        );
        assert!(err("[[nodes]]\nname = \"a\"\nssh_options = [\"Nope\"]\n")
            .starts_with("c.toml:3: bad ssh option"));
    }

    #[test]
    fn hosts_that_ssh_would_misread_are_refused_at_their_line() {
        // A leading '-' would reach ssh's command line as an option.
        let e = err("[[nodes]]\nname = \"a\"\nhost = \"-oProxyCommand=touch x\"\n");
        assert!(
            e.starts_with("c.toml:3: host '-oProxyCommand=touch x' starts with '-'"),
            "{e}"
        );
        // From [defaults], the error is at the default's line.
        let e = err("[defaults]\nhost = \"h\\tx\"\n[[nodes]]\nname = \"a\"\n");
        assert!(e.starts_with("c.toml:2: host"), "{e}");
        assert!(e.contains("cannot stand in an ssh config"), "{e}");
        // A name that is its own host: at the name's line.
        let e = err("[[nodes]]\nname = \"a b\"\n");
        assert!(e.starts_with("c.toml:2: host 'a b' contains ' '"), "{e}");
        for bad in ["h*", "h?", "h#x", "h,x", "h\\\"x", "h\\nx"] {
            let e = err(&format!("[[nodes]]\nname = \"a\"\nhost = \"{bad}\"\n"));
            assert!(e.starts_with("c.toml:3: host"), "{bad}: {e}");
        }
        let e = err("[[nodes]]\nname = \"a\"\njump = \"-oProxyCommand=x\"\n");
        assert!(e.contains("bad jump host"), "{e}");
        let e = format!("{:#}", Inventory::from_hosts("-x").unwrap_err());
        assert!(e.contains("--hosts"), "{e}");
        // What is fine stays fine: names, IPv4, IPv6 with a zone, dashes inside.
        let nodes = parse_str(
            "[[nodes]]\nname = \"a\"\nhost = \"fe80::1%eth0\"\n[[nodes]]\nname = \"b-1\"\n",
        )
        .unwrap();
        assert_eq!(nodes[0].host, "fe80::1%eth0");
        assert_eq!(nodes[1].host, "b-1");
    }

    fn inventory(text: &str) -> Result<Inventory> {
        let (nodes, groups) = parse_with_groups(Path::new("c.toml"), text, Path::new("/b"))?;
        Ok(Inventory {
            source: Source::File("c.toml".into()),
            nodes,
            groups,
        })
    }

    const GROUPED: &str = "[[nodes]]\nname = \"node[1-8]\"\n[[nodes]]\nname = \"db[1-2]\"\nlabels = [\"gpu\"]\n\n[groups]\nweb = \"node[1-8]\"\neu = [\"node1\", \"db[1-2]\", \"@odd\"]\nodd = \"node[1,3,5,7]\"\n";

    #[test]
    fn groups_and_set_operators_select_left_to_right() {
        let inv = inventory(GROUPED).unwrap();
        let pick = |nodes: &str, exclude: Option<&str>| -> Vec<String> {
            let sel = Selection {
                nodes: Some(nodes.into()),
                exclude: exclude.map(String::from),
                labels: vec![],
            };
            inv.select(sel)
                .unwrap()
                .into_iter()
                .map(|n| n.name)
                .collect()
        };
        assert_eq!(pick("@web&@eu", None), ["node1", "node3", "node5", "node7"]);
        assert_eq!(
            pick("@web,node[5-6]!node2", None).len(),
            7,
            "web plus node5 and node6, without node2"
        );
        assert_eq!(
            pick("@eu^@web", None),
            ["node2", "node4", "node6", "node8", "db1", "db2"]
        );
        assert_eq!(pick("@label:gpu", None), ["db1", "db2"]);
        assert_eq!(pick("@gpu", None), ["db1", "db2"], "a label is a group");
        assert_eq!(pick("@all", Some("@web")), ["db1", "db2"]);
        let e = format!(
            "{:#}",
            inv.select(Selection {
                nodes: Some("@web,@nope".into()),
                ..Selection::default()
            })
            .unwrap_err()
        );
        assert!(
            e.contains("--nodes: unknown group '@nope'") && e.contains("eu, odd, web"),
            "{e}"
        );
    }

    #[test]
    fn jump_hosts_are_nodes_or_addresses() {
        let nodes = parse_str(
            "[defaults]\nidentity_file = \"k\"\njump = \"bastion\"\n[[nodes]]\nname = \"bastion\"\nport = 2200\nuser = \"b\"\n[[nodes]]\nname = \"a\"\n[[nodes]]\nname = \"c\"\njump = \"ops@[::1]:2222\"\n",
        )
        .unwrap();
        assert!(
            nodes[0].jump.is_none(),
            "the bastion itself is reached directly"
        );
        let j = nodes[1].jump.as_deref().unwrap();
        assert_eq!(
            (j.name.as_str(), j.port, j.user.as_deref()),
            ("bastion", Some(2200), Some("b"))
        );
        let j = nodes[2].jump.as_deref().unwrap();
        assert_eq!(
            (j.host.as_str(), j.port, j.user.as_deref()),
            ("::1", Some(2222), Some("ops"))
        );
        assert_eq!(
            j.identity_file.as_deref(),
            Some(Path::new("/base/k")),
            "the node's own key"
        );
        let e = err("[[nodes]]\nname = \"a\"\njump = \"b\"\n[[nodes]]\nname = \"b\"\njump = \"c\"\n[[nodes]]\nname = \"c\"\n");
        assert!(
            e.starts_with("c.toml:3: jump host 'b' has a jump host of its own"),
            "{e}"
        );
        assert!(err("[[nodes]]\nname = \"a\"\njump = \"x:0\"\n").starts_with("c.toml:3: bad port"));
    }

    #[test]
    fn group_errors_name_file_and_line() {
        let base = "[[nodes]]\nname = \"n[1-2]\"\n[groups]\n";
        let e = format!(
            "{:#}",
            inventory(&format!("{base}a = \"@b\"\nb = [\"n1\", \"@a\"]\n")).unwrap_err()
        );
        assert!(e.starts_with("c.toml:4: group cycle: a → @b → @a"), "{e}");
        let e = format!(
            "{:#}",
            inventory(&format!("{base}a = \"n[1-3]\"\n")).unwrap_err()
        );
        assert!(
            e.starts_with("c.toml:4: group 'a': no node named 'n3'"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            inventory(&format!("{base}a = \"@zz\"\n")).unwrap_err()
        );
        assert!(
            e.starts_with("c.toml:4: group 'a': unknown group '@zz'"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            inventory(&format!("{base}a = \"@failed\"\n")).unwrap_err()
        );
        assert!(e.contains("cannot be part of a group"), "{e}");
        let e = format!(
            "{:#}",
            inventory(&format!("{base}ok = \"n1\"\n")).unwrap_err()
        );
        assert!(e.contains("reserved"), "{e}");
        let e = err("[[nodes]]\nname = \"a!b\"\n");
        assert!(e.contains("not allowed"), "{e}");
    }

    #[test]
    fn hosts_spec() {
        let inv = Inventory::from_hosts("node[1-2],admin@db:2222").unwrap();
        let names: Vec<_> = inv.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["node1", "node2", "db"]);
        assert_eq!(inv.nodes[2].user.as_deref(), Some("admin"));
        assert_eq!(inv.nodes[2].port, Some(2222));
        let v6 = Inventory::from_hosts("::1,[fe80::2]:2222,u@[::3]").unwrap();
        assert_eq!((v6.nodes[0].host.as_str(), v6.nodes[0].port), ("::1", None));
        assert_eq!(
            (v6.nodes[1].host.as_str(), v6.nodes[1].port),
            ("fe80::2", Some(2222))
        );
        assert_eq!(v6.nodes[2].host, "::3");
        assert!(Inventory::from_hosts("h:0").is_err());
        let same_host = Inventory::from_hosts("127.0.0.1:2201,127.0.0.1:2202").unwrap();
        assert_eq!(same_host.nodes[1].name, "127.0.0.1:2202");
    }
}
