//! The built-in operations, by the names both sides use on the command line.

use std::fmt;

/// A built-in op of `worker-agent op` (BRIEF "Ops").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Op {
    Upper,
    Lower,
    CountLines,
    CountWords,
    CountChars,
    Sum,
    Avg,
    Min,
    Max,
    Grep,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::Upper,
        Op::Lower,
        Op::CountLines,
        Op::CountWords,
        Op::CountChars,
        Op::Sum,
        Op::Avg,
        Op::Min,
        Op::Max,
        Op::Grep,
    ];

    /// The name on the command line and in JSON (`count-lines`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Upper => "upper",
            Op::Lower => "lower",
            Op::CountLines => "count-lines",
            Op::CountWords => "count-words",
            Op::CountChars => "count-chars",
            Op::Sum => "sum",
            Op::Avg => "avg",
            Op::Min => "min",
            Op::Max => "max",
            Op::Grep => "grep",
        }
    }

    /// What it answers, in one line (the man page lists them).
    pub fn describe(self) -> &'static str {
        match self {
            Op::Upper => "the input with ASCII letters upper-cased, every other byte untouched",
            Op::Lower => "the input with ASCII letters lower-cased, every other byte untouched",
            Op::CountLines => "lines N (a final line without newline counts)",
            Op::CountWords => "words N (runs of bytes that are not ASCII whitespace)",
            Op::CountChars => "chars N (UTF-8 characters; an invalid byte counts as one)",
            Op::Sum => "count N and sum S of one number per line (integers exact)",
            Op::Avg => "count N and avg V of one number per line",
            Op::Min => "count N and min V of one number per line",
            Op::Max => "count N and max V of one number per line",
            Op::Grep => "lines matching --pattern RE (Rust regex, on bytes), in order",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Every output byte replaces the input byte at the same place: the
    /// result of a chunk can be written straight to its offset in the output.
    pub fn preserves_length(self) -> bool {
        matches!(self, Op::Upper | Op::Lower)
    }

    /// The agent runs it faster than any link brings bytes (GB/s on one
    /// core): one chunk at a time per node keeps up, where the numeric ops,
    /// bound by parsing, want every core of the node.
    pub fn streams_at_memory_speed(self) -> bool {
        !self.is_numeric()
    }

    /// Aggregates answer with a [`crate::Partial`] (`P` frame), not data.
    pub fn is_aggregate(self) -> bool {
        !matches!(self, Op::Upper | Op::Lower | Op::Grep)
    }

    /// Ops that read one number per line.
    pub fn is_numeric(self) -> bool {
        matches!(self, Op::Sum | Op::Avg | Op::Min | Op::Max)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
        assert_eq!(Op::from_name("nope"), None);
    }
}
