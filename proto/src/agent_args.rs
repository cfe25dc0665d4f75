//! The agent's command line for one chunk: `worker-agent op OP ...` or
//! `worker-agent exec ... -- CMD ...`. distctl renders an [`AgentCall`] to
//! argv ([`AgentCall::to_argv`]) and quotes it for the remote shell; the agent
//! parses the same words back ([`AgentCall::parse`]). Parsed by hand: the
//! agent stays free of clap.

use std::path::PathBuf;

use crate::Op;

/// Where the chunk comes from and where the result goes, and how.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Io {
    /// Answer in frames (`--framed`), as distctl reads them.
    pub framed: bool,
    /// The chunk's length: the agent fails a chunk that arrives shorter or longer.
    pub expect_bytes: Option<u64>,
    /// Read this file instead of stdin.
    pub input: Option<PathBuf>,
    /// Write this file instead of stdout.
    pub output: Option<PathBuf>,
    /// The chunk's index in the run (`--chunk N`): echoed in the `End`
    /// frame, so an answer for another chunk is refused.
    pub chunk: Option<u64>,
    /// `--input-frames`: the chunk arrives as `D` and `Z` frames (blocks
    /// sent plain or compressed, [`crate::codec`]), not as plain bytes.
    pub input_frames: bool,
    /// `--compress-output LEVEL`: result blocks go as `Z` frames (zstd at
    /// LEVEL) where they shrink (framed runs only).
    pub compress_output: Option<i32>,
    /// `--compress-output auto`: result blocks go plain until a `Z` frame
    /// arrives on the input, then as `Z` frames at the default level: distctl
    /// decides mid-chunk and the agent follows (with `--input-frames`).
    pub compress_output_like_input: bool,
}

/// `op OP [--pattern REGEX] [--skip-invalid] [--line-offset L] [IO...]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpArgs {
    pub op: Op,
    pub pattern: Option<String>,
    pub skip_invalid: bool,
    /// 0-based index of the chunk's first line (numeric ops name bad lines).
    pub line_offset: u64,
    pub io: Io,
}

/// `exec [IO...] -- CMD [ARGS...]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    /// The command and its arguments, run without a shell (distctl sends `sh -c CMD`).
    pub command: Vec<String>,
    pub io: Io,
}

/// One invocation of the agent on a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCall {
    Op(OpArgs),
    Exec(ExecArgs),
}

impl AgentCall {
    /// The words after the agent's path. Paths are rendered lossily: the
    /// agent reads its arguments as UTF-8.
    pub fn to_argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = Vec::new();
        match self {
            AgentCall::Op(a) => {
                argv.extend(["op".into(), a.op.name().into()]);
                if let Some(p) = &a.pattern {
                    argv.extend(["--pattern".into(), p.clone()]);
                }
                if a.skip_invalid {
                    argv.push("--skip-invalid".into());
                }
                if a.line_offset != 0 {
                    argv.extend(["--line-offset".into(), a.line_offset.to_string()]);
                }
                a.io.render(&mut argv);
            }
            AgentCall::Exec(a) => {
                argv.push("exec".into());
                a.io.render(&mut argv);
                argv.push("--".into());
                argv.extend(a.command.iter().cloned());
            }
        }
        argv
    }

    /// `op ...` or `exec ...` (the words after the agent's path).
    pub fn parse(argv: &[String]) -> Result<AgentCall, String> {
        let rest = argv.get(1..).unwrap_or_default();
        match argv.first().map(String::as_str) {
            Some("op") => parse_op(rest).map(AgentCall::Op),
            Some("exec") => parse_exec(rest).map(AgentCall::Exec),
            Some(other) => Err(format!("not an op or exec command: '{other}'")),
            None => Err("which command?".into()),
        }
    }
}

impl Io {
    fn render(&self, argv: &mut Vec<String>) {
        if self.framed {
            argv.push("--framed".into());
        }
        if let Some(n) = self.expect_bytes {
            argv.extend(["--expect-bytes".into(), n.to_string()]);
        }
        if let Some(p) = &self.input {
            argv.extend(["--input".into(), p.to_string_lossy().into_owned()]);
        }
        if let Some(p) = &self.output {
            argv.extend(["--output".into(), p.to_string_lossy().into_owned()]);
        }
        if let Some(n) = self.chunk {
            argv.extend(["--chunk".into(), n.to_string()]);
        }
        if self.input_frames {
            argv.push("--input-frames".into());
        }
        if let Some(l) = self.compress_output {
            argv.extend(["--compress-output".into(), l.to_string()]);
        } else if self.compress_output_like_input {
            argv.extend(["--compress-output".into(), "auto".into()]);
        }
    }
}

/// Splits `--key=value` and walks the words.
struct Words<'a> {
    words: std::slice::Iter<'a, String>,
    pending: Option<String>,
}

impl<'a> Words<'a> {
    fn new(words: &'a [String]) -> Words<'a> {
        Words {
            words: words.iter(),
            pending: None,
        }
    }

    fn next(&mut self) -> Option<String> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        let w = self.words.next()?;
        match w.split_once('=') {
            Some((k, v)) if k.starts_with("--") && k.len() > 2 => {
                self.pending = Some(v.to_string());
                Some(k.to_string())
            }
            _ => Some(w.clone()),
        }
    }

    /// The value of `flag`: the part after `=`, or the next word taken whole
    /// (a pattern like `--color=auto` is a value, not another flag).
    fn value(&mut self, flag: &str) -> Result<String, String> {
        self.pending
            .take()
            .or_else(|| self.words.next().cloned())
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    fn number(&mut self, flag: &str) -> Result<u64, String> {
        let v = self.value(flag)?;
        v.parse()
            .map_err(|_| format!("{flag}: not a non-negative integer: '{v}'"))
    }

    fn rest(&mut self) -> Vec<String> {
        self.pending
            .take()
            .into_iter()
            .chain(self.words.by_ref().cloned())
            .collect()
    }

    /// An option shared by `op` and `exec`; false when `flag` is not one.
    fn io_flag(&mut self, flag: &str, io: &mut Io) -> Result<bool, String> {
        match flag {
            "--framed" => io.framed = true,
            "--expect-bytes" => io.expect_bytes = Some(self.number(flag)?),
            "--input" => io.input = Some(self.value(flag)?.into()),
            "--output" => io.output = Some(self.value(flag)?.into()),
            "--chunk" => io.chunk = Some(self.number(flag)?),
            "--input-frames" => io.input_frames = true,
            "--compress-output" => {
                let v = self.value(flag)?;
                if v == "auto" {
                    io.compress_output_like_input = true;
                    return Ok(true);
                }
                let level = v
                    .parse()
                    .ok()
                    .filter(|l| crate::codec::LEVELS.contains(l) && *l != 0)
                    .ok_or_else(|| format!("{flag}: not a zstd level or auto: '{v}'"))?;
                io.compress_output = Some(level);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `op OP [flags]` (the words after `op`).
pub fn parse_op(args: &[String]) -> Result<OpArgs, String> {
    let mut w = Words::new(args);
    let mut op = None;
    let mut a = OpArgs {
        op: Op::Upper,
        pattern: None,
        skip_invalid: false,
        line_offset: 0,
        io: Io::default(),
    };
    while let Some(word) = w.next() {
        if w.io_flag(&word, &mut a.io)? {
            continue;
        }
        match word.as_str() {
            "--pattern" => a.pattern = Some(w.value(&word)?),
            "--skip-invalid" => a.skip_invalid = true,
            "--line-offset" => a.line_offset = w.number(&word)?,
            name if !name.starts_with('-') && op.is_none() => {
                op = Some(Op::from_name(name).ok_or_else(|| format!("unknown op '{name}'"))?)
            }
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    a.op = op.ok_or("op: which op?")?;
    match (a.op, &a.pattern) {
        (Op::Grep, None) => return Err("grep needs --pattern REGEX".into()),
        (op, Some(_)) if op != Op::Grep => return Err("--pattern is only for grep".into()),
        _ => {}
    }
    Ok(a)
}

/// `exec [flags] -- CMD ARGS...` (the words after `exec`).
pub fn parse_exec(args: &[String]) -> Result<ExecArgs, String> {
    let mut w = Words::new(args);
    let mut io = Io::default();
    while let Some(word) = w.next() {
        if word == "--" {
            let command = w.rest();
            if command.is_empty() {
                return Err("exec: no command after --".into());
            }
            return Ok(ExecArgs { command, io });
        }
        if !w.io_flag(&word, &mut io)? {
            return Err(format!(
                "unexpected argument '{word}' (the command goes after --)"
            ));
        }
    }
    Err("exec: no command (exec [options] -- CMD ARGS...)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    fn round_trip(call: AgentCall) {
        let argv = call.to_argv();
        assert_eq!(AgentCall::parse(&argv), Ok(call), "argv: {argv:?}");
    }

    fn framed(len: u64) -> Io {
        Io {
            framed: true,
            expect_bytes: Some(len),
            ..Io::default()
        }
    }

    #[test]
    fn ops_round_trip() {
        for op in Op::ALL {
            for line_offset in [0, 1, u64::MAX] {
                for skip_invalid in [false, true] {
                    round_trip(AgentCall::Op(OpArgs {
                        op,
                        pattern: (op == Op::Grep).then(|| "a.b".into()),
                        skip_invalid,
                        line_offset,
                        io: framed(line_offset / 2),
                    }));
                }
            }
        }
    }

    #[test]
    fn awkward_patterns_and_paths_round_trip() {
        for pattern in [
            "--color=auto",
            "-v",
            "--",
            "x=y",
            "",
            " lead and trail ",
            "it's \"quoted\"",
            "--framed",
            "a\nb",
        ] {
            round_trip(AgentCall::Op(OpArgs {
                op: Op::Grep,
                pattern: Some(pattern.into()),
                skip_invalid: false,
                line_offset: 3,
                io: Io {
                    framed: false,
                    expect_bytes: None,
                    input: Some(format!("-in {pattern}").into()),
                    output: Some("--output=x".into()),
                    chunk: Some(7),
                    input_frames: true,
                    compress_output: Some(-3),
                    compress_output_like_input: false,
                },
            }));
        }
    }

    #[test]
    fn exec_commands_round_trip() {
        let commands: [&[&str]; 7] = [
            &["sh", "-c", "tr a-z A-Z"],
            &["sh", "-c", "awk '{print $1}' | sort -u"],
            &["sh", "-c", "echo \"a b\"; echo 'c'"],
            &["--framed"],
            &["-x", "--", "--expect-bytes=3"],
            &["cmd with spaces", ""],
            &["sh", "-c", "printf '%s\\n' \"$HOME\""],
        ];
        for cmd in commands {
            for io in [Io::default(), framed(0), framed(1 << 40)] {
                round_trip(AgentCall::Exec(ExecArgs {
                    command: cmd.iter().map(|s| s.to_string()).collect(),
                    io,
                }));
            }
        }
    }

    #[test]
    fn distctl_chunk_command_lines() {
        let call = AgentCall::Op(OpArgs {
            op: Op::Sum,
            pattern: None,
            skip_invalid: true,
            line_offset: 7,
            io: framed(10),
        });
        assert_eq!(
            call.to_argv().join(" "),
            "op sum --skip-invalid --line-offset 7 --framed --expect-bytes 10"
        );
        let call = AgentCall::Exec(ExecArgs {
            command: words("sh -c wc"),
            io: framed(5),
        });
        assert_eq!(
            call.to_argv().join(" "),
            "exec --framed --expect-bytes 5 -- sh -c wc"
        );
    }

    #[test]
    fn op_with_every_flag() {
        let a = parse_op(&words(
            "grep --pattern=a.b --framed --expect-bytes 10 --input in --output out",
        ))
        .unwrap();
        assert_eq!(a.op, Op::Grep);
        assert_eq!(a.pattern.as_deref(), Some("a.b"));
        assert!(a.io.framed);
        assert_eq!(a.io.expect_bytes, Some(10));
        assert_eq!(a.io.input, Some("in".into()));
        // A value that looks like a flag with '=' is still one whole value.
        let a = parse_op(&words("grep --pattern --color=auto --framed")).unwrap();
        assert_eq!(a.pattern.as_deref(), Some("--color=auto"));
        assert!(a.io.framed);
        let a = parse_op(&words("grep --pattern=x=y")).unwrap();
        assert_eq!(a.pattern.as_deref(), Some("x=y"));
        let a = parse_op(&words("sum --skip-invalid --line-offset 7")).unwrap();
        assert!(a.skip_invalid);
        assert_eq!(a.line_offset, 7);
    }

    #[test]
    fn compression_flags_round_trip() {
        for (input_frames, compress_output) in [(true, None), (false, Some(1)), (true, Some(19))] {
            round_trip(AgentCall::Exec(ExecArgs {
                command: words("sh -c cat"),
                io: Io {
                    input_frames,
                    compress_output,
                    ..framed(9)
                },
            }));
        }
        let a = parse_op(&words("upper --framed --input-frames --compress-output 3")).unwrap();
        assert!(a.io.input_frames);
        assert_eq!(a.io.compress_output, Some(3));
        assert!(parse_op(&words("upper --compress-output 0")).is_err());
        assert!(parse_op(&words("upper --compress-output fast")).is_err());
        let a = parse_op(&words(
            "upper --framed --input-frames --compress-output auto",
        ))
        .unwrap();
        assert!(a.io.compress_output_like_input);
        assert_eq!(a.io.compress_output, None);
        round_trip(AgentCall::Op(OpArgs {
            op: Op::Upper,
            pattern: None,
            skip_invalid: false,
            line_offset: 0,
            io: Io {
                input_frames: true,
                compress_output_like_input: true,
                ..framed(2)
            },
        }));
    }

    #[test]
    fn op_errors() {
        assert!(parse_op(&words("grep")).is_err());
        assert!(parse_op(&words("upper --pattern x")).is_err());
        assert!(parse_op(&words("nope")).is_err());
        assert!(parse_op(&words("sum --line-offset -1")).is_err());
        assert!(parse_op(&[]).is_err());
        assert!(AgentCall::parse(&words("sample --json")).is_err());
        assert!(AgentCall::parse(&[]).is_err());
    }

    #[test]
    fn exec_keeps_the_command_verbatim() {
        let a = parse_exec(&words("--framed -- sh -c --framed=x")).unwrap();
        assert!(a.io.framed);
        assert_eq!(a.command, ["sh", "-c", "--framed=x"]);
        assert!(parse_exec(&words("--framed")).is_err());
        assert!(parse_exec(&words("--")).is_err());
    }
}
