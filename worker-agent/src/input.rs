//! The chunk coming in: stdin or `--input FILE`, with its bytes counted so
//! distctl can check nothing was lost on the way.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::output::grow_pipe;

pub struct Input {
    source: Box<dyn Read + Send>,
    pub bytes: u64,
}

impl Input {
    pub fn open(path: Option<&Path>) -> io::Result<Input> {
        let source: Box<dyn Read + Send> = match path {
            Some(p) => Box::new(File::open(p)?),
            None => {
                grow_pipe(0);
                Box::new(io::stdin())
            }
        };
        Ok(Input { source, bytes: 0 })
    }

    /// With `--expect-bytes N`: an error unless exactly N bytes came in
    /// (fewer means the sender went away mid-chunk).
    pub fn check(&self, expect: Option<u64>) -> Result<(), String> {
        match expect {
            Some(n) if n != self.bytes => Err(format!(
                "input was {} bytes, expected {n}: the chunk was cut short",
                self.bytes
            )),
            _ => Ok(()),
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.source.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}
