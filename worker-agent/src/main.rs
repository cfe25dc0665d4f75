mod metrics;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("version") => println!("{}", distctl_proto::AGENT_VERSION),
        Some(cmd @ ("sample" | "facts")) => std::process::exit(metrics::main(cmd, &args[1..])),
        _ => {
            eprintln!("usage: worker-agent version");
            std::process::exit(2);
        }
    }
}
