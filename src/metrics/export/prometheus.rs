//! Prometheus text for node_exporter's textfile collector: gauges labelled
//! by node and host, in base units. The file is always replaced whole.

use anyhow::Result;

use super::Exporter;
use crate::metrics::{sample_time, MetricsSample, SampleStatus};

pub struct PrometheusExporter;

impl Exporter for PrometheusExporter {
    fn serialize(&self, samples: &[MetricsSample], _first: bool) -> Result<Vec<u8>> {
        Ok(prometheus_text(samples).into_bytes())
    }

    /// The collector needs the file replaced whole.
    fn appends(&self) -> bool {
        false
    }
}

/// One Prometheus gauge family: name, help, and how to read it from a sample
/// (in base units: seconds, bytes, ratios).
struct Gauge {
    name: &'static str,
    help: &'static str,
    value: fn(&MetricsSample) -> Option<f64>,
}

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = MIB * 1024.0;

const GAUGES: &[Gauge] = &[
    Gauge {
        name: "distctl_node_up",
        help: "1 when distctl could connect to the node, else 0.",
        value: |s| {
            Some(if s.status == SampleStatus::Unreachable {
                0.0
            } else {
                1.0
            })
        },
    },
    Gauge {
        name: "distctl_node_sample_success",
        help: "1 when every metric of the node was sampled, else 0.",
        value: |s| {
            Some(if s.status == SampleStatus::Ok {
                1.0
            } else {
                0.0
            })
        },
    },
    Gauge {
        name: "distctl_node_sample_timestamp_seconds",
        help: "Controller clock when the sample was taken, seconds since the Unix epoch.",
        value: sample_time,
    },
    Gauge {
        name: "distctl_node_uptime_seconds",
        help: "Node uptime.",
        value: |s| s.uptime_s.map(|v| v as f64),
    },
    Gauge {
        name: "distctl_node_load1",
        help: "1-minute load average.",
        value: |s| s.load1,
    },
    Gauge {
        name: "distctl_node_load5",
        help: "5-minute load average.",
        value: |s| s.load5,
    },
    Gauge {
        name: "distctl_node_load15",
        help: "15-minute load average.",
        value: |s| s.load15,
    },
    Gauge {
        name: "distctl_node_cpu_busy_ratio",
        help: "Busy share of all CPUs over the sample interval (0-1).",
        value: |s| s.cpu_pct.map(|v| v / 100.0),
    },
    Gauge {
        name: "distctl_node_cpu_cores",
        help: "Online logical CPUs.",
        value: |s| s.cores.map(f64::from),
    },
    Gauge {
        name: "distctl_node_memory_used_bytes",
        help: "Memory in use (MemTotal - MemAvailable).",
        value: |s| s.mem_used_mib.map(|v| v as f64 * MIB),
    },
    Gauge {
        name: "distctl_node_memory_total_bytes",
        help: "Total memory.",
        value: |s| s.mem_total_mib.map(|v| v as f64 * MIB),
    },
    Gauge {
        name: "distctl_node_swap_used_bytes",
        help: "Swap in use.",
        value: |s| s.swap_used_mib.map(|v| v as f64 * MIB),
    },
    Gauge {
        name: "distctl_node_filesystem_used_bytes",
        help: "Used space of the workdir's filesystem, as df counts it.",
        value: |s| s.disk_used_gib.map(|v| v * GIB),
    },
    Gauge {
        name: "distctl_node_filesystem_size_bytes",
        help: "Size of the workdir's filesystem.",
        value: |s| s.disk_total_gib.map(|v| v * GIB),
    },
    Gauge {
        name: "distctl_node_disk_read_bytes_per_second",
        help: "Bytes read from disks per second over the sample interval.",
        value: |s| s.disk_read_kib_s.map(|v| v * 1024.0),
    },
    Gauge {
        name: "distctl_node_disk_written_bytes_per_second",
        help: "Bytes written to disks per second over the sample interval.",
        value: |s| s.disk_write_kib_s.map(|v| v * 1024.0),
    },
    Gauge {
        name: "distctl_node_network_receive_bytes_per_second",
        help: "Bytes received per second on all interfaces but loopback.",
        value: |s| s.net_rx_kib_s.map(|v| v * 1024.0),
    },
    Gauge {
        name: "distctl_node_network_transmit_bytes_per_second",
        help: "Bytes sent per second on all interfaces but loopback.",
        value: |s| s.net_tx_kib_s.map(|v| v * 1024.0),
    },
];

/// Samples in the Prometheus text exposition format, as node_exporter's
/// textfile collector reads it: gauges labelled by node and host, no
/// timestamps (the collector rejects them), families grouped with HELP/TYPE.
fn prometheus_text(samples: &[MetricsSample]) -> String {
    let mut out = String::new();
    for g in GAUGES {
        let rows: Vec<(&MetricsSample, f64)> = samples
            .iter()
            .filter_map(|s| (g.value)(s).map(|v| (s, v)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} gauge\n",
            g.name, g.help, g.name
        ));
        for (s, v) in rows {
            out.push_str(&format!(
                "{}{{node=\"{}\",host=\"{}\"}} {}\n",
                g.name,
                label_value(&s.node),
                label_value(&s.host),
                v
            ));
        }
    }
    out
}

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::export::csv::tests::sample;

    #[test]
    fn prometheus_families_and_labels() {
        let mut down = sample("b");
        down.status = SampleStatus::Unreachable;
        down.cpu_pct = None;
        let text = prometheus_text(&[sample("a"), down]);
        assert!(text.contains("# TYPE distctl_node_up gauge\n"));
        assert!(text.contains("distctl_node_up{node=\"a\",host=\"h\\\"x\"} 1\n"));
        assert!(text.contains("distctl_node_up{node=\"b\",host=\"h\\\"x\"} 0\n"));
        assert!(text.contains("distctl_node_cpu_busy_ratio{node=\"a\",host=\"h\\\"x\"} 0.125\n"));
        assert!(!text.contains("distctl_node_cpu_busy_ratio{node=\"b\""));
        assert!(text.contains(
            "distctl_node_sample_timestamp_seconds{node=\"a\",host=\"h\\\"x\"} 1767323045\n"
        ));
    }
}
