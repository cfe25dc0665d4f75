//! The agent's command line, parsed by hand (it stays small without clap).
//! distctl builds these command lines; people use them as local references.

use std::path::PathBuf;

use distctl_proto::Op;

/// Where the chunk comes from and where the result goes, and how.
#[derive(Debug, Default, PartialEq)]
pub struct Io {
    pub framed: bool,
    pub expect_bytes: Option<u64>,
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
}

#[derive(Debug, PartialEq)]
pub struct OpArgs {
    pub op: Op,
    pub pattern: Option<String>,
    pub skip_invalid: bool,
    pub line_offset: u64,
    pub io: Io,
}

#[derive(Debug, PartialEq)]
pub struct ExecArgs {
    pub command: Vec<String>,
    pub io: Io,
}

pub const USAGE: &str = "usage:
  worker-agent version
  worker-agent op OP [--pattern REGEX] [--skip-invalid] [--line-offset L] [IO...]
      OP: upper lower count-lines count-words count-chars sum avg min max grep
  worker-agent exec [IO...] -- CMD [ARGS...]
  worker-agent facts --json | sample ...
IO: [--framed] [--expect-bytes N] [--input FILE] [--output FILE]";

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
    fn op_errors() {
        assert!(parse_op(&words("grep")).is_err());
        assert!(parse_op(&words("upper --pattern x")).is_err());
        assert!(parse_op(&words("nope")).is_err());
        assert!(parse_op(&words("sum --line-offset -1")).is_err());
        assert!(parse_op(&[]).is_err());
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
