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
    escape: bool,
}

impl LineSplitter {
    /// Lines will start with `"{node}: "`.
    pub fn new(node: &str) -> LineSplitter {
        LineSplitter {
            prefix: format!("{node}: ").into_bytes(),
            partial: Vec::new(),
            escape: false,
        }
    }

    /// Show control characters as [`escape_controls`] does (for a
    /// terminal: a node's output cannot move the cursor, retitle the window
    /// or hide text).
    pub fn escaped(mut self, escape: bool) -> LineSplitter {
        self.escape = escape;
        self
    }

    /// Feed bytes as read; returns the complete lines now available (each
    /// prefixed and newline-terminated), possibly empty.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&data[..nl]);
            self.emit(&mut out);
            data = &data[nl + 1..];
        }
        self.partial.extend_from_slice(data);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            self.emit(&mut out);
            self.partial = rest;
        }
        out
    }

    /// The final line when the stream ended without a newline (one is added).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.partial.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        self.emit(&mut out);
        Some(out)
    }

    /// The held line, prefixed and newline-terminated, onto `out`.
    fn emit(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        if self.escape {
            let line = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
            out.extend_from_slice(&escape_controls(line));
            self.partial.clear();
        } else {
            out.append(&mut self.partial);
        }
        out.push(b'\n');
    }
}

/// Text as `cat -v` shows it: control characters as `^X` (`^?` for DEL),
/// C1 controls and bytes that are not UTF-8 as `M-…`; tabs, newlines and
/// valid UTF-8 text stay as they are.
pub fn escape_controls(data: &[u8]) -> Vec<u8> {
    fn ascii(out: &mut Vec<u8>, b: u8) {
        match b {
            b'\t' | b'\n' => out.push(b),
            0..=0x1f => out.extend_from_slice(&[b'^', b + 64]),
            0x7f => out.extend_from_slice(b"^?"),
            _ => out.push(b),
        }
    }
    let mut out = Vec::with_capacity(data.len());
    for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c as u32 {
                0..=0x7f => ascii(&mut out, c as u8),
                0x80..=0x9f => {
                    out.extend_from_slice(b"M-");
                    ascii(&mut out, (c as u32 - 0x80) as u8);
                }
                _ => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        for &b in chunk.invalid() {
            out.extend_from_slice(b"M-");
            ascii(&mut out, b & 0x7f);
        }
    }
    out
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
    fn control_characters_are_shown_as_cat_v_does() {
        assert_eq!(escape_controls(b"a\x1b[2Jb\x07\t\x7f"), b"a^[[2Jb^G\t^?");
        assert_eq!(
            escape_controls("caf\u{e9} \u{9b}".as_bytes()),
            "caf\u{e9} M-^[".as_bytes()
        );
        assert_eq!(escape_controls(b"\xff\xe9"), b"M-^?M-i");
        let mut s = LineSplitter::new("n").escaped(true);
        assert_eq!(s.push(b"\x1b]0;pwned\x07ok\r\nx"), b"n: ^[]0;pwned^Gok\n");
        assert_eq!(s.finish().unwrap(), b"n: x\n");
        let mut raw = LineSplitter::new("n");
        assert_eq!(raw.push(b"\x1b[31mred\n"), b"n: \x1b[31mred\n");
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut s = LineSplitter::new("n");
        let out = s.push(&vec![b'a'; MAX_LINE + 5]);
        assert_eq!(out.len(), 3 + MAX_LINE + 1);
        assert_eq!(s.finish().unwrap(), b"n: aaaaa\n");
    }
}
