//! Cutting a node's output stream into whole lines, each prefixed with the
//! node's name, so that output from many nodes can be interleaved line by
//! line and never within a line.

/// A line longer than this is cut and printed in pieces (each piece a line of
/// its own) rather than held in memory without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// Buffers one stream's partial line between reads.
pub struct LineSplitter {
    prefix: Vec<u8>,
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Lines will start with `"{node}: "`.
    pub fn new(node: &str) -> LineSplitter {
        LineSplitter {
            prefix: format!("{node}: ").into_bytes(),
            partial: Vec::new(),
        }
    }

    /// Feed bytes as read; returns the complete lines now available (each
    /// prefixed and newline-terminated), possibly empty.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&self.prefix);
            out.append(&mut self.partial);
            out.extend_from_slice(&data[..=nl]);
            data = &data[nl + 1..];
        }
        self.partial.extend_from_slice(data);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            out.extend_from_slice(&self.prefix);
            out.append(&mut self.partial);
            out.push(b'\n');
            self.partial = rest;
        }
        out
    }

    /// The final line when the stream ended without a newline (one is added).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.partial.is_empty() {
            return None;
        }
        let mut out = self.prefix.clone();
        out.append(&mut self.partial);
        out.push(b'\n');
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_reads_come_out_whole() {
        let mut s = LineSplitter::new("n1");
        assert_eq!(s.push(b"hel"), b"");
        assert_eq!(s.push(b"lo\nwor"), b"n1: hello\n");
        assert_eq!(s.push(b"ld\n\nx"), b"n1: world\nn1: \n");
        assert_eq!(s.finish().unwrap(), b"n1: x\n");
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut s = LineSplitter::new("n");
        let out = s.push(&vec![b'a'; MAX_LINE + 5]);
        assert_eq!(out.len(), 3 + MAX_LINE + 1);
        assert_eq!(s.finish().unwrap(), b"n: aaaaa\n");
    }
}
