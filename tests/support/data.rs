//! Test and benchmark inputs, generated deterministically (xorshift64), so
//! every test and bench draws from one set of generators.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// A deterministic xorshift64 stream.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Text made to break line handling: non-ASCII and invalid UTF-8, tabs, a
/// lone `\r`, CRLF endings, the odd 400-word line, and a last line without
/// newline. At least `size` bytes.
pub fn awkward_text(size: usize) -> Vec<u8> {
    let words: [&[u8]; 10] = [
        b"alpha",
        b"Bravo",
        b"CHARLIE",
        b"d\xc3\xa9j\xc3\xa0",
        b"\xe4\xb8\xad\xe6\x96\x87",
        b"x\xffy",
        b"tab\there",
        b"\r",
        b"0123",
        b"mIxEd",
    ];
    let mut out = Vec::with_capacity(size + 100);
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    while out.len() < size {
        let x = rng.next();
        let n = if x.is_multiple_of(97) {
            400
        } else {
            (x % 23) as usize
        };
        for k in 0..n {
            if k > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(words[((x >> (k % 50)) % 10) as usize]);
        }
        out.extend_from_slice(if x.is_multiple_of(5) { b"\r\n" } else { b"\n" });
    }
    out.extend_from_slice(b"last line without newline");
    out
}

/// Word text as people feed it: lines of 1-15 words, some non-ASCII, about
/// `bytes` long, written to `path` without holding it all in memory.
pub fn write_word_text(path: &Path, bytes: u64) {
    let words: [&[u8]; 10] = [
        b"alpha",
        b"beta",
        b"Gamma",
        b"delta",
        "café".as_bytes(),
        "naïve".as_bytes(),
        b"x",
        b"hello",
        b"WORLD",
        b"42",
    ];
    let mut w = BufWriter::new(File::create(path).unwrap());
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut n = 0u64;
    while n < bytes {
        let count = 1 + rng.next() % 15;
        for i in 0..count {
            let word = words[(rng.next() % 10) as usize];
            if i > 0 {
                w.write_all(b" ").unwrap();
            }
            w.write_all(word).unwrap();
            n += word.len() as u64 + 1;
        }
        w.write_all(b"\n").unwrap();
    }
    w.flush().unwrap();
}

/// One number per line, `lines` of them: integers, decimals with spaces
/// around, CRLF endings, and integers too large for i64 sums to stay exact.
pub fn numbers(lines: usize) -> String {
    let mut s = String::new();
    for i in 0..lines {
        let v = (i as i64 * 7919) % 100_003 - 50_000;
        match i % 4 {
            0 => s.push_str(&format!("{v}\n")),
            1 => s.push_str(&format!("  {v}.25 \n")),
            2 => s.push_str(&format!("{v}\r\n")),
            _ => s.push_str(&format!("{}\n", v * 1_000_000_007)),
        }
    }
    s
}

/// [`numbers`] into `path`, about `bytes` long.
pub fn write_numbers(path: &Path, bytes: u64) {
    // The mix above averages ~12 bytes a line.
    let lines = (bytes / 12).max(1) as usize;
    std::fs::write(path, numbers(lines)).unwrap();
}
