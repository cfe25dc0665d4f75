//! `distctl report`: a metrics CSV as one self-contained HTML page — inline
//! SVG charts (one per metric, one line per node over time) and a table of
//! each node's latest sample. No scripts, fonts or anything fetched: it opens
//! offline, from a mail attachment or a CI artifact.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::metrics::{MetricsSample, SampleStatus};
use distctl_proto::metrics::format_uptime;

/// A sample placed on the time axis (seconds since the Unix epoch).
pub struct TimedSample {
    pub t: f64,
    pub sample: MetricsSample,
}

struct Chart {
    id: &'static str,
    title: &'static str,
    value: Figure,
    /// Fixed top of the y axis (CPU %); else from the data.
    y_max: Option<f64>,
}

/// `part` of `total` in percent.
fn pct(part: Option<f64>, total: Option<f64>) -> Option<f64> {
    match (part, total) {
        (Some(p), Some(t)) if t > 0.0 => Some(p / t * 100.0),
        _ => None,
    }
}

/// One figure read from a sample.
type Figure = fn(&MetricsSample) -> Option<f64>;

fn mem_pct(s: &MetricsSample) -> Option<f64> {
    pct(
        s.mem_used_mib.map(|v| v as f64),
        s.mem_total_mib.map(|v| v as f64),
    )
}

/// A load average per online core (1.0 = every core busy).
fn per_core(load: Option<f64>, s: &MetricsSample) -> Option<f64> {
    pct(load, s.cores.map(f64::from)).map(|p| p / 100.0)
}

/// An even number of panels, so the two-column grid leaves no hole.
const CHARTS: &[Chart] = &[
    Chart {
        id: "cpu_pct",
        title: "CPU busy (%)",
        value: |s| s.cpu_pct,
        y_max: Some(100.0),
    },
    Chart {
        id: "mem_used_pct",
        title: "Memory used (% of each node's total)",
        value: mem_pct,
        y_max: Some(100.0),
    },
    Chart {
        id: "load1_per_core",
        title: "Load per core, 1 min (1 = every core busy)",
        value: |s| per_core(s.load1, s),
        y_max: None,
    },
    Chart {
        id: "load15_per_core",
        title: "Load per core, 15 min",
        value: |s| per_core(s.load15, s),
        y_max: None,
    },
    Chart {
        id: "disk_used_pct",
        title: "Disk used, workdir filesystem (% of its size)",
        value: |s| pct(s.disk_used_gib, s.disk_total_gib),
        y_max: Some(100.0),
    },
    Chart {
        id: "swap_used_mib",
        title: "Swap used (MiB)",
        value: |s| s.swap_used_mib.map(|v| v as f64),
        y_max: None,
    },
    Chart {
        id: "disk_read_kib_s",
        title: "Disk read (KiB/s)",
        value: |s| s.disk_read_kib_s,
        y_max: None,
    },
    Chart {
        id: "disk_write_kib_s",
        title: "Disk write (KiB/s)",
        value: |s| s.disk_write_kib_s,
        y_max: None,
    },
    Chart {
        id: "net_rx_kib_s",
        title: "Network received (KiB/s)",
        value: |s| s.net_rx_kib_s,
        y_max: None,
    },
    Chart {
        id: "net_tx_kib_s",
        title: "Network sent (KiB/s)",
        value: |s| s.net_tx_kib_s,
        y_max: None,
    },
];

/// Ten colours told apart by most eyes (Tableau 10); past ten nodes they
/// repeat with a dash pattern.
const COLORS: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];

const W: f64 = 580.0;
const H: f64 = 250.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;

/// Render the page. `source` names the CSV in the heading.
pub fn render(samples: &[TimedSample], source: &str) -> String {
    // Nodes in order of first appearance, each with its samples in time order.
    let mut order: Vec<&str> = Vec::new();
    let mut by_node: BTreeMap<&str, Vec<&TimedSample>> = BTreeMap::new();
    for s in samples {
        let node = s.sample.node.as_str();
        if !by_node.contains_key(node) {
            order.push(node);
        }
        by_node.entry(node).or_default().push(s);
    }
    for list in by_node.values_mut() {
        list.sort_by(|a, b| a.t.total_cmp(&b.t));
    }
    let series: Vec<(&str, &[&TimedSample])> =
        order.iter().map(|n| (*n, by_node[n].as_slice())).collect();

    let mut html = String::new();
    html.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <title>distctl metrics report</title>\n<style>\n",
    );
    html.push_str(STYLE);
    html.push_str("</style></head><body>\n<h1>distctl metrics</h1>\n");
    let (t0, t1) = time_range(samples);
    let _ = writeln!(
        html,
        "<p class=\"meta\">{} · {} sample(s) from {} node(s){} · times in UTC</p>",
        esc(source),
        samples.len(),
        series.len(),
        if samples.is_empty() {
            String::new()
        } else {
            format!(" · {} to {}", rfc3339(t0), rfc3339(t1))
        }
    );
    if samples.is_empty() {
        html.push_str("<p>No samples yet: run <code>distctl collect</code> first.</p>\n");
        html.push_str("</body></html>\n");
        return html;
    }
    // Toggles without scripts: a hidden checkbox per node, its label in the
    // legend; checked, that node's lines leave every chart.
    html.push_str("<style>");
    for i in 0..series.len() {
        let _ = write!(
            html,
            "#hide{i}:checked~.grid [data-i=\"{i}\"]{{display:none}}\
             #hide{i}:checked~.legend label[for=hide{i}]{{opacity:.35;text-decoration:line-through}}"
        );
    }
    html.push_str("</style>\n");
    for i in 0..series.len() {
        let _ = write!(
            html,
            "<input type=\"checkbox\" class=\"toggle\" id=\"hide{i}\">"
        );
    }
    html.push_str(
        "<div class=\"legend\"><span class=\"hint\">Click a node to hide or show its lines:</span>",
    );
    for (i, (node, _)) in series.iter().enumerate() {
        let _ = write!(
            html,
            "<label class=\"key\" for=\"hide{i}\"><svg width=\"26\" height=\"10\"><line x1=\"1\" y1=\"5\" x2=\"25\" y2=\"5\" \
             stroke=\"{}\" stroke-width=\"3\" stroke-dasharray=\"{}\"/></svg>{}</label>",
            color(i),
            dash(i),
            esc(node)
        );
    }
    html.push_str("</div>\n<div class=\"grid\">\n");
    for chart in CHARTS {
        html.push_str(&render_chart(chart, &series, t0, t1));
    }
    html.push_str("</div>\n");
    html.push_str(&period_table(&series));
    html.push_str(&down_list(&series));
    html.push_str(&latest_table(&series));
    html.push_str("</body></html>\n");
    html
}

const STYLE: &str =
    "body{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#222;background:#fff}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:15px;margin:0 0 4px}\
.meta{color:#666;margin:0 0 10px}\
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:0 0 12px}.key{white-space:nowrap}\
.key svg{vertical-align:middle;margin-right:4px}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px}\
.toggle{display:none}label.key{cursor:pointer}.hint{color:#666}\
.note{color:#666;font-size:12px;margin:2px 0 0}\
.chart{border:1px solid #ddd;border-radius:6px;padding:8px}\
.chart svg{width:100%;height:auto}\
.axis{font-size:11px;fill:#555}.gridline{stroke:#e6e6e6}.frame{stroke:#999;fill:none}\
.series{fill:none;stroke-width:2;stroke-linejoin:round}\
.down{fill:#d62728}\
table{border-collapse:collapse;margin-top:6px;font-size:13px}h2.section{margin-top:18px}\
.wide{overflow-x:auto}th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}td{white-space:nowrap}td.err{white-space:normal;min-width:12em}th{background:#f4f4f4}\
td.l,th.l{text-align:left}.ok{color:#2a7d2a}.bad{color:#c0392b;font-weight:600}\n";

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn dash(i: usize) -> &'static str {
    DASHES[(i / COLORS.len()) % DASHES.len()]
}

fn time_range(samples: &[TimedSample]) -> (f64, f64) {
    let t0 = samples.iter().map(|s| s.t).fold(f64::INFINITY, f64::min);
    let t1 = samples
        .iter()
        .map(|s| s.t)
        .fold(f64::NEG_INFINITY, f64::max);
    (t0, t1)
}

fn render_chart(chart: &Chart, series: &[(&str, &[&TimedSample])], t0: f64, t1: f64) -> String {
    // One sample in time: give the axis a minute around it.
    let (t0, t1) = if t1 - t0 < 1.0 {
        (t0 - 30.0, t1 + 30.0)
    } else {
        (t0, t1)
    };
    let data_max = series
        .iter()
        .flat_map(|(_, s)| s.iter().filter_map(|x| (chart.value)(&x.sample)))
        .fold(0.0f64, f64::max);
    let (step, top) = nice_axis(chart.y_max.unwrap_or(data_max));
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: f64| LEFT + (t - t0) / (t1 - t0) * pw;
    let y = |v: f64| TOP + ph - v / top * ph;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<section class=\"chart\" data-metric=\"{}\"><h2>{}</h2>\n\
         <svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        chart.id, chart.title, chart.title
    );
    // Horizontal grid and y labels.
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let _ = write!(
            svg,
            "<line class=\"gridline\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            number(v),
            y = y(v)
        );
        v += step;
    }
    // Time ticks on round times (UTC), the date where it changes.
    let (step, ticks) = time_ticks(t0, t1);
    let mut day = String::new();
    for t in ticks {
        let full = rfc3339(t);
        let date = full[5..10].to_string();
        let label = if step >= 86400.0 {
            date.clone()
        } else {
            let time = if step < 60.0 {
                &full[11..19]
            } else {
                &full[11..16]
            };
            if date != day {
                format!("{date} {time}")
            } else {
                time.to_string()
            }
        };
        day = date;
        let _ = write!(
            svg,
            "<line class=\"gridline\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"/>\
             <text class=\"axis tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            TOP + ph,
            H - 10.0,
            x = x(t)
        );
    }
    let _ = write!(
        svg,
        "<rect class=\"frame\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw:.1}\" height=\"{ph:.1}\"/>"
    );
    // One line per node; a sample without a value breaks the line so gaps show.
    for (i, (node, samples)) in series.iter().enumerate() {
        let mut d = String::new();
        let mut pen_down = false;
        let mut dots = String::new();
        let points = chart_points(samples, chart.value);
        for p in &points {
            match p.value {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1} {:.1} ",
                        if pen_down { "L" } else { "M" },
                        x(p.t),
                        y(v)
                    );
                    pen_down = true;
                    if points.len() <= 60 {
                        let _ = write!(
                            dots,
                            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"><title>{} {} {}</title></circle>",
                            x(p.t),
                            y(v),
                            color(i),
                            esc(node),
                            esc(p.label),
                            number(v)
                        );
                    }
                }
                None => pen_down = false,
            }
        }
        // Where the node was not sampled: a red band in its own lane at the
        // bottom, saying which node, when and why.
        for d in down_periods(samples) {
            let _ = write!(
                dots,
                "<rect class=\"down\" data-i=\"{i}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"3\"><title>{}</title></rect>",
                x(d.from),
                TOP + ph - 4.0 * (i % 8 + 1) as f64,
                (x(d.to) - x(d.from)).max(3.0),
                esc(&d.describe(node))
            );
        }
        let _ = write!(
            svg,
            "<g data-i=\"{i}\"><path class=\"series\" data-node=\"{}\" stroke=\"{}\" stroke-dasharray=\"{}\" d=\"{}\"/>{}</g>",
            esc(node),
            color(i),
            dash(i),
            d.trim_end(),
            dots
        );
    }
    svg.push_str("</svg>");
    if data_max == 0.0 && chart.y_max.is_none() {
        svg.push_str(if chart.id.starts_with("net_") {
            "<p class=\"note\">All zero: loopback (lo) is not counted, so nodes that only talk over 127.0.0.1 show no traffic.</p>"
        } else {
            "<p class=\"note\">All zero over this period.</p>"
        });
    }
    svg.push_str("</section>\n");
    svg
}

/// A stretch of time a node was not sampled.
struct DownPeriod<'a> {
    from: f64,
    /// The next ok sample (or the last bad one).
    to: f64,
    status: SampleStatus,
    samples: usize,
    first: &'a str,
    last: &'a str,
}

impl DownPeriod<'_> {
    fn describe(&self, node: &str) -> String {
        format!(
            "{node} {} from {} to {} ({} sample(s))",
            status_word(self.status),
            self.first,
            self.last,
            self.samples
        )
    }
}

fn down_periods<'a>(samples: &[&'a TimedSample]) -> Vec<DownPeriod<'a>> {
    let mut out: Vec<DownPeriod> = Vec::new();
    let mut open = false;
    for s in samples {
        let st = s.sample.status;
        match (st == SampleStatus::Ok, open, out.last_mut()) {
            (true, true, Some(d)) => {
                d.to = s.t;
                open = false;
            }
            (false, true, Some(d)) => {
                d.to = s.t;
                d.samples += 1;
                d.last = &s.sample.timestamp_utc;
            }
            (false, _, _) => {
                out.push(DownPeriod {
                    from: s.t,
                    to: s.t,
                    status: st,
                    samples: 1,
                    first: &s.sample.timestamp_utc,
                    last: &s.sample.timestamp_utc,
                });
                open = true;
            }
            _ => {}
        }
    }
    out
}

/// Every stretch a node was not sampled, which node, when and why.
fn down_list(series: &[(&str, &[&TimedSample])]) -> String {
    let mut rows = String::new();
    for (node, samples) in series {
        for d in down_periods(samples) {
            let reason = samples
                .iter()
                .find(|s| s.t >= d.from && s.sample.status != SampleStatus::Ok)
                .and_then(|s| s.sample.error.as_deref())
                .unwrap_or("");
            let _ = writeln!(
                rows,
                "<tr data-down-node=\"{}\"><td class=\"l\">{}</td><td class=\"l bad\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l err\">{}</td></tr>",
                esc(node),
                esc(node),
                status_word(d.status),
                esc(d.first),
                esc(d.last),
                d.samples,
                esc(reason)
            );
        }
    }
    if rows.is_empty() {
        return "<h2 class=\"section\">Unreachable periods</h2>\n<p>None: every node answered every round.</p>\n".into();
    }
    format!(
        "<h2 class=\"section\">Unreachable periods</h2>\n<div class=\"wide\"><table class=\"down-periods\"><thead><tr><th class=\"l\">node</th><th class=\"l\">status</th>\
         <th class=\"l\">first (UTC)</th><th class=\"l\">last (UTC)</th><th>samples</th><th class=\"l\">error</th></tr></thead><tbody>\n{rows}</tbody></table></div>\n"
    )
}

/// min / avg / max / p95 of `values` (nearest rank), `–` when empty.
fn spread(mut values: Vec<f64>) -> [String; 4] {
    if values.is_empty() {
        return std::array::from_fn(|_| "–".to_string());
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let p95 = values[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1];
    let avg = values.iter().sum::<f64>() / n as f64;
    [values[0], avg, values[n - 1], p95].map(|v| format!("{v:.1}"))
}

/// Per node over the whole period: availability, then min/avg/max/p95 of
/// CPU, memory and load per core.
fn period_table(series: &[(&str, &[&TimedSample])]) -> String {
    let stats: [(&str, Figure); 3] = [
        ("CPU %", |s| s.cpu_pct),
        ("memory %", mem_pct),
        ("load 1 per core", |s| per_core(s.load1, s)),
    ];
    let mut t = String::from(
        "<h2 class=\"section\">Per node over the period</h2>\n<div class=\"wide\"><table class=\"period\"><thead><tr>\
         <th class=\"l\" rowspan=\"2\">node</th><th rowspan=\"2\">samples</th><th rowspan=\"2\">available</th>",
    );
    for (name, _) in &stats {
        let _ = write!(t, "<th colspan=\"4\">{name}</th>");
    }
    t.push_str("</tr><tr>");
    for _ in &stats {
        t.push_str("<th>min</th><th>avg</th><th>max</th><th>p95</th>");
    }
    t.push_str("</tr></thead><tbody>\n");
    for (node, samples) in series {
        let ok = samples
            .iter()
            .filter(|s| s.sample.status == SampleStatus::Ok)
            .count();
        let _ = write!(
            t,
            "<tr data-stats-node=\"{}\"><td class=\"l\">{}</td><td>{}</td><td class=\"{}\">{:.1}%</td>",
            esc(node),
            esc(node),
            samples.len(),
            if ok == samples.len() { "ok" } else { "bad" },
            ok as f64 / samples.len().max(1) as f64 * 100.0
        );
        for (_, value) in &stats {
            for cell in spread(samples.iter().filter_map(|s| value(&s.sample)).collect()) {
                let _ = write!(t, "<td>{cell}</td>");
            }
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</tbody></table></div>\n");
    t
}

/// Past this many samples a node's line is drawn from averages of
/// consecutive samples: a month of 5-minute cron rows stays a light page.
const MAX_POINTS: usize = 720;

/// One drawn point: a sample, or the average of a run of samples.
struct Point<'a> {
    t: f64,
    value: Option<f64>,
    /// The (first) sample's timestamp, for the tooltip.
    label: &'a str,
}

fn chart_points<'a>(
    samples: &[&'a TimedSample],
    value: fn(&MetricsSample) -> Option<f64>,
) -> Vec<Point<'a>> {
    let per_point = samples.len().div_ceil(MAX_POINTS).max(1);
    samples
        .chunks(per_point)
        .map(|run| {
            let values: Vec<f64> = run.iter().filter_map(|s| value(&s.sample)).collect();
            Point {
                t: run.iter().map(|s| s.t).sum::<f64>() / run.len() as f64,
                value: (!values.is_empty())
                    .then(|| values.iter().sum::<f64>() / values.len() as f64),
                label: &run[0].sample.timestamp_utc,
            }
        })
        .collect()
}

/// A tick step of 1, 2 or 5 × 10^k giving about five ticks, and the axis top.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (max / step).ceil() * step)
}

/// Axis and tooltip numbers: short, no trailing zeros (`0.8`, `1500`, `12.5`).
fn number(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn rfc3339(t: f64) -> String {
    let ts = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0.0) as u64);
    humantime::format_rfc3339_seconds(ts).to_string()
}

/// Round steps for a time axis (seconds): 1 s up to a week.
const TIME_STEPS: [f64; 21] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    10800.0, 21600.0, 43200.0, 86400.0, 172800.0, 345600.0, 604800.0,
];

/// Ticks at multiples of a round step (UTC), at most six over the span.
fn time_ticks(t0: f64, t1: f64) -> (f64, Vec<f64>) {
    let span = t1 - t0;
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 6.0)
        .unwrap_or(604800.0);
    let mut ticks = Vec::new();
    let mut t = (t0 / step).ceil() * step;
    while t <= t1 {
        ticks.push(t);
        t += step;
    }
    (step, ticks)
}

fn status_word(s: SampleStatus) -> &'static str {
    match s {
        SampleStatus::Ok => "ok",
        SampleStatus::Unreachable => "unreachable",
        SampleStatus::Error => "error",
    }
}

fn latest_table(series: &[(&str, &[&TimedSample])]) -> String {
    let mut t = String::from(
        "<h2 class=\"section\">Latest sample per node</h2>\n<div class=\"wide\"><table><thead><tr><th class=\"l\">node</th><th class=\"l\">host</th>\
         <th class=\"l\">time (UTC)</th><th class=\"l\">status</th><th>CPU %</th><th>cores</th>\
         <th>load 1/5/15</th><th>mem used / total MiB</th><th>swap MiB</th><th>disk used / total GiB</th>\
         <th>disk r/w KiB/s</th><th>net rx/tx KiB/s</th><th>uptime</th><th class=\"l\">error</th></tr></thead><tbody>\n",
    );
    // The table shows the CSV's own figures.
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| v.to_string());
    let optu = |v: Option<u64>| v.map_or("–".to_string(), |v| v.to_string());
    for (node, samples) in series {
        let Some(last) = samples.last() else { continue };
        let s = &last.sample;
        let ok = s.status == SampleStatus::Ok;
        let _ = writeln!(
            t,
            "<tr data-node=\"{}\"><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
             <td class=\"l {}\">{}</td><td>{}</td><td>{}</td><td>{} / {} / {}</td><td>{} / {}</td><td>{}</td>\
             <td>{} / {}</td><td>{} / {}</td><td>{} / {}</td><td>{}</td><td class=\"l err\">{}</td></tr>",
            esc(node),
            esc(node),
            esc(&s.host),
            esc(&s.timestamp_utc),
            if ok { "ok" } else { "bad" },
            status_word(s.status),
            opt(s.cpu_pct),
            optu(s.cores.map(u64::from)),
            opt(s.load1),
            opt(s.load5),
            opt(s.load15),
            optu(s.mem_used_mib),
            optu(s.mem_total_mib),
            optu(s.swap_used_mib),
            opt(s.disk_used_gib),
            opt(s.disk_total_gib),
            opt(s.disk_read_kib_s),
            opt(s.disk_write_kib_s),
            opt(s.net_rx_kib_s),
            opt(s.net_tx_kib_s),
            s.uptime_s.map_or("–".to_string(), format_uptime),
            esc(s.error.as_deref().unwrap_or(""))
        );
    }
    t.push_str("</tbody></table></div>\n");
    t
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64, node: &str, cpu: Option<f64>) -> TimedSample {
        TimedSample {
            t,
            sample: MetricsSample {
                node: node.into(),
                timestamp_utc: "2026-01-01T00:00:00Z".into(),
                status: if cpu.is_some() {
                    SampleStatus::Ok
                } else {
                    SampleStatus::Unreachable
                },
                cpu_pct: cpu,
                ..MetricsSample::default()
            },
        }
    }

    #[test]
    fn nice_axes() {
        assert_eq!(nice_axis(100.0), (20.0, 100.0));
        assert_eq!(nice_axis(7.3), (2.0, 8.0));
        assert_eq!(nice_axis(0.0), (0.2, 1.0));
        assert_eq!(nice_axis(1234.0), (500.0, 1500.0));
    }

    #[test]
    fn gaps_break_lines_and_names_are_escaped() {
        let html = render(
            &[
                at(0.0, "a<b", Some(10.0)),
                at(10.0, "a<b", None),
                at(20.0, "a<b", Some(30.0)),
            ],
            "m.csv",
        );
        assert!(!html.contains("a<b"));
        let cpu = html.split("data-metric=\"cpu_pct\"").nth(1).unwrap();
        let path = cpu.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert!(!path.contains('L'));
        assert!(cpu.contains("class=\"down\""));
    }

    #[test]
    fn long_series_are_averaged_down() {
        let samples: Vec<TimedSample> = (0..MAX_POINTS * 3)
            .map(|i| at(i as f64, "n", Some((i % 3) as f64)))
            .collect();
        let refs: Vec<&TimedSample> = samples.iter().collect();
        let points = chart_points(&refs, |s| s.cpu_pct);
        assert_eq!(points.len(), MAX_POINTS);
        assert!(points.iter().all(|p| p.value == Some(1.0)));
    }

    #[test]
    fn empty_input_says_so() {
        assert!(render(&[], "m.csv").contains("No samples yet"));
    }
}
