//! The built-in ops over one chunk, as pure functions of the input bytes:
//! the result bytes go to a [`Sink`], aggregates return a [`Partial`].
//!
//! Input is read in large buffers and cut into *regions* that an op can
//! handle alone: anywhere for byte ops and counts, never inside a UTF-8
//! sequence for `count-chars`, only after a newline for line ops. A region
//! never splits what the op looks at, so results do not depend on how reads
//! happen to fall.

use std::io::{self, Read};

use distctl_proto::partial::{is_space, trim};
use distctl_proto::{Num, Op, Partial};
use regex::bytes::{Regex, RegexBuilder};

/// Bytes asked of each read; a region grows past it only for a longer line.
pub const READ_SIZE: usize = 1 << 20;

/// Where result bytes go.
pub trait Sink {
    fn data(&mut self, bytes: &[u8]);
    /// The end of a region: a good moment to send what is buffered.
    fn flush(&mut self) {}
}

impl Sink for Vec<u8> {
    fn data(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Why an op failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub message: String,
    /// The input itself is bad (retrying cannot help).
    pub input_error: bool,
}

impl OpError {
    fn input(message: String) -> OpError {
        OpError {
            message,
            input_error: true,
        }
    }
}

/// An op with its settings, ready to run.
pub struct OpSpec {
    pub op: Op,
    pub pattern: Option<Regex>,
    pub skip_invalid: bool,
    /// 0-based index of the chunk's first line in the whole input.
    pub line_offset: u64,
}

/// Compile a grep pattern. `^` and `$` match at line boundaries.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .multi_line(true)
        .build()
        .map_err(|e| format!("invalid pattern: {}", e.to_string().replace('\n', " ")))
}

/// Run `spec` over all of `input`. Reads to the end even after a data error
/// (so the sender is never cut off), then reports the first error.
pub fn run(spec: &OpSpec, input: &mut dyn Read, sink: &mut dyn Sink) -> Result<Partial, OpError> {
    let mut state = State::new(spec);
    let align = match spec.op {
        Op::Upper | Op::Lower | Op::CountLines | Op::CountWords => Align::Any,
        Op::CountChars => Align::Utf8,
        Op::Sum | Op::Avg | Op::Min | Op::Max | Op::Grep => Align::Lines,
    };
    for_each_region(input, align, |region| {
        if state.error.is_none() {
            state.region(spec, region, sink);
            sink.flush();
        }
    })
    .map_err(|e| OpError {
        message: format!("reading input: {e}"),
        input_error: false,
    })?;
    state.finish()
}

/// Where a region may end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Align {
    Any,
    Utf8,
    Lines,
}

/// Read all of `input` and hand it to `f` in regions cut per `align`; the
/// last region may lack its newline.
fn for_each_region(
    input: &mut dyn Read,
    align: Align,
    mut f: impl FnMut(&mut [u8]),
) -> io::Result<()> {
    let mut buf = vec![0u8; READ_SIZE];
    let mut filled = 0;
    loop {
        if buf.len() - filled < READ_SIZE / 2 {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match input.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if filled > 0 {
                f(&mut buf[..filled]);
            }
            return Ok(());
        }
        let new = filled;
        filled += n;
        let cut = match align {
            Align::Any => filled,
            Align::Utf8 => utf8_cut(&buf[..filled]),
            // The carried part has no newline: look only at the new bytes.
            Align::Lines => memchr::memrchr(b'\n', &buf[new..filled]).map_or(0, |i| new + i + 1),
        };
        if cut > 0 {
            f(&mut buf[..cut]);
            buf.copy_within(cut..filled, 0);
            filled -= cut;
        }
    }
}

/// Where to cut `buf` so that no UTF-8 sequence that may still be completed
/// by the following bytes is split: before a trailing incomplete sequence.
fn utf8_cut(buf: &[u8]) -> usize {
    let len = buf.len();
    for back in 1..=3.min(len) {
        let b = buf[len - back];
        if b & 0xC0 != 0x80 {
            // A lead (or ASCII) byte: does its sequence reach past the end?
            let need = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if need > back { len - back } else { len };
        }
    }
    len
}

/// The running state of one op.
struct State {
    partial: Partial,
    /// For count-words: the byte before the current region was whitespace.
    after_space: bool,
    /// For count-lines: the last byte seen.
    last: Option<u8>,
    /// Lines seen so far (numeric ops).
    line_no: u64,
    error: Option<OpError>,
}

impl State {
    fn new(spec: &OpSpec) -> State {
        State {
            partial: Partial {
                skip_invalid: spec.skip_invalid && spec.op.is_numeric(),
                ..Partial::default()
            },
            after_space: true,
            last: None,
            line_no: 0,
            error: None,
        }
    }

    fn region(&mut self, spec: &OpSpec, region: &mut [u8], sink: &mut dyn Sink) {
        match spec.op {
            Op::Upper => {
                to_upper(region);
                sink.data(region);
            }
            Op::Lower => {
                to_lower(region);
                sink.data(region);
            }
            Op::CountLines => {
                self.partial.lines += count_byte(region, b'\n');
                self.last = region.last().copied().or(self.last);
            }
            Op::CountWords => {
                self.partial.words += count_words(region, self.after_space);
                if let Some(&b) = region.last() {
                    self.after_space = is_space(b);
                }
            }
            Op::CountChars => self.partial.chars += count_chars(region),
            Op::Sum | Op::Avg | Op::Min | Op::Max => self.numbers(spec, region),
            Op::Grep => grep(
                spec.pattern.as_ref().expect("grep has a pattern"),
                region,
                sink,
            ),
        }
    }

    fn numbers(&mut self, spec: &OpSpec, region: &[u8]) {
        for line in lines(region) {
            self.line_no += 1;
            let text = trim(line);
            if text.is_empty() {
                continue;
            }
            let added = match Num::parse(text) {
                Some(n) => self.partial.add_number(n).map_err(|e| e.0),
                None if spec.skip_invalid => {
                    self.partial.skipped += 1;
                    Ok(())
                }
                None => Err(format!("not a number: '{}'", shown(text))),
            };
            if let Err(msg) = added {
                let n = spec.line_offset + self.line_no;
                self.error = Some(OpError::input(format!("line {n}: {msg}")));
                return;
            }
        }
    }

    fn finish(mut self) -> Result<Partial, OpError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.last.is_some_and(|b| b != b'\n') {
            self.partial.lines += 1;
        }
        Ok(self.partial)
    }
}

/// The lines of a region, without their newlines (no empty line after a
/// final newline).
fn lines(region: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', region);
    std::iter::from_fn(move || {
        let end = ends
            .next()
            .or((start < region.len()).then_some(region.len()))?;
        let line = &region[start..end];
        start = end + 1;
        Some(line)
    })
}

/// A bad line as it appears in an error message: lossy UTF-8, at most 60 chars.
fn shown(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s.into_owned()
    }
}

/// ASCII a-z to A-Z, every other byte untouched (like `tr a-z A-Z`).
/// Branch-free so it vectorizes.
pub fn to_upper(buf: &mut [u8]) {
    for b in buf {
        *b ^= ((b.wrapping_sub(b'a') < 26) as u8) << 5;
    }
}

/// ASCII A-Z to a-z, every other byte untouched.
pub fn to_lower(buf: &mut [u8]) {
    for b in buf {
        *b ^= ((b.wrapping_sub(b'A') < 26) as u8) << 5;
    }
}

fn count_byte(buf: &[u8], needle: u8) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline.
        unsafe {
            let n = _mm_set1_epi8(needle as i8);
            count_sse2(buf, |v| _mm_cmpeq_epi8(v, n), |b| b == needle)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    count_pairs_where(buf, buf, |_, b| b == needle)
}

/// UTF-8 characters of valid UTF-8: the bytes that are not continuation
/// bytes (0x80..=0xBF, i.e. -64..=-65 as i8 and below).
fn count_char_starts(buf: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline.
        unsafe {
            let limit = _mm_set1_epi8(-65);
            count_sse2(buf, |v| _mm_cmpgt_epi8(v, limit), |b| (b as i8) >= -0x40)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    count_pairs_where(buf, buf, |_, b| (b as i8) >= -0x40)
}

/// Count the bytes whose `mask` lane is all ones, 16 at a time: compare,
/// subtract the -1 lanes into byte counters, fold them with `psadbw` before
/// they can overflow. `scalar` does the tail.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn count_sse2(
    buf: &[u8],
    mask: impl Fn(std::arch::x86_64::__m128i) -> std::arch::x86_64::__m128i,
    scalar: impl Fn(u8) -> bool,
) -> u64 {
    use std::arch::x86_64::*;
    let mut total = 0u64;
    let blocks = buf.chunks_exact(16);
    let tail = blocks.remainder();
    let mut acc = _mm_setzero_si128();
    for (i, block) in blocks.enumerate() {
        let v = _mm_loadu_si128(block.as_ptr() as *const __m128i);
        acc = _mm_sub_epi8(acc, mask(v));
        if i % 255 == 254 {
            let sums = _mm_sad_epu8(acc, _mm_setzero_si128());
            total += (_mm_cvtsi128_si64(sums) + _mm_extract_epi16(sums, 4) as i64) as u64;
            acc = _mm_setzero_si128();
        }
    }
    let sums = _mm_sad_epu8(acc, _mm_setzero_si128());
    total += (_mm_cvtsi128_si64(sums) + _mm_extract_epi16(sums, 4) as i64) as u64;
    total + tail.iter().filter(|&&b| scalar(b)).count() as u64
}

/// How many `i` satisfy `pred(a[i], b[i])` (`a` and `b` of equal length).
/// Counts in 32 byte-wide lanes that the compiler turns into SIMD compares,
/// emptied before they can overflow.
#[inline(always)]
fn count_pairs_where(a: &[u8], b: &[u8], pred: impl Fn(u8, u8) -> bool) -> u64 {
    const LANES: usize = 32;
    const BLOCK: usize = LANES * 255;
    let mut total = 0u64;
    for (ab, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut acc = [0u8; LANES];
        let (a32, b32) = (ab.chunks_exact(LANES), bb.chunks_exact(LANES));
        let (ra, rb) = (a32.remainder(), b32.remainder());
        for (x, y) in a32.zip(b32) {
            for j in 0..LANES {
                acc[j] += pred(x[j], y[j]) as u8;
            }
        }
        total += acc.iter().map(|&c| c as u64).sum::<u64>();
        total += ra.iter().zip(rb).filter(|(&x, &y)| pred(x, y)).count() as u64;
    }
    total
}

/// Word starts in `buf`: a non-space byte after a space (or after the start,
/// when `after_space`).
fn count_words(buf: &[u8], after_space: bool) -> u64 {
    let Some(&first) = buf.first() else {
        return 0;
    };
    let starts = count_pairs_where(&buf[..buf.len() - 1], &buf[1..], |p, c| {
        is_space(p) & !is_space(c)
    });
    starts + (after_space && !is_space(first)) as u64
}

/// UTF-8 characters, each byte of an invalid sequence counting as one (std's
/// `Utf8Chunks`: valid chars plus `invalid().len()`).
fn count_chars(mut buf: &[u8]) -> u64 {
    let mut chars = 0u64;
    loop {
        match simdutf8::compat::from_utf8(buf) {
            Ok(s) => return chars + count_utf8_chars(s.as_bytes()),
            Err(e) => {
                let valid = e.valid_up_to();
                chars += count_utf8_chars(&buf[..valid]);
                let bad = e.error_len().unwrap_or(buf.len() - valid);
                chars += bad as u64;
                buf = &buf[valid + bad..];
            }
        }
    }
}

/// Characters of valid UTF-8: the bytes that are not continuation bytes.
fn count_utf8_chars(valid: &[u8]) -> u64 {
    count_char_starts(valid)
}

/// Copy the lines of `region` that match `re` to `sink`, newline kept.
/// The regex runs over the whole region (fast) and every match is mapped to
/// its line; a match that runs past its line is checked again on that line
/// alone, so the result is exactly "the lines that match".
fn grep(re: &Regex, region: &[u8], sink: &mut dyn Sink) {
    let len = region.len();
    let ends_in_newline = region.last() == Some(&b'\n');
    let mut pos = 0;
    while pos < len {
        let Some(m) = re.find_at(region, pos) else {
            break;
        };
        if m.start() == len && ends_in_newline {
            break;
        }
        let start = memchr::memrchr(b'\n', &region[pos..m.start()]).map_or(pos, |i| pos + i + 1);
        let end = memchr::memchr(b'\n', &region[m.start()..]).map_or(len, |i| m.start() + i);
        if m.end() <= end || re.is_match(&region[start..end]) {
            sink.data(&region[start..(end + 1).min(len)]);
        }
        pos = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read, to put read
    /// boundaries everywhere.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn spec(op: Op) -> OpSpec {
        OpSpec {
            op,
            pattern: None,
            skip_invalid: false,
            line_offset: 0,
        }
    }

    /// Run with several read sizes; all must agree. Returns (data, text).
    fn run_all(spec: &OpSpec, input: &[u8]) -> Result<(Vec<u8>, String), OpError> {
        let mut first: Option<Result<(Vec<u8>, String), OpError>> = None;
        for step in [1, 2, 3, 7, 4096, usize::MAX] {
            let mut out = Vec::new();
            let got = run(spec, &mut Trickle { data: input, step }, &mut out)
                .map(|p| (out, p.render_text(spec.op).unwrap()));
            match &first {
                None => first = Some(got),
                Some(f) => assert_eq!(&got, f, "read size {step}"),
            }
        }
        first.unwrap()
    }

    fn text(op: Op, input: &[u8]) -> String {
        run_all(&spec(op), input).unwrap().1
    }

    fn data(op: Op, input: &[u8]) -> Vec<u8> {
        run_all(&spec(op), input).unwrap().0
    }

    fn grep_lines(pattern: &str, input: &[u8]) -> Vec<u8> {
        let s = OpSpec {
            pattern: Some(compile_pattern(pattern).unwrap()),
            ..spec(Op::Grep)
        };
        run_all(&s, input).unwrap().0
    }

    /// What `grep` means, one line at a time.
    fn grep_reference(pattern: &str, input: &[u8]) -> Vec<u8> {
        let re = compile_pattern(pattern).unwrap();
        let mut out = Vec::new();
        for line in input.split_inclusive(|&b| b == b'\n') {
            if re.is_match(line.strip_suffix(b"\n").unwrap_or(line)) {
                out.extend_from_slice(line);
            }
        }
        out
    }

    const AWKWARD: &[&[u8]] = &[
        b"",
        b"\n",
        b"\n\n\n",
        b"abc",
        b"abc\n",
        b"one two\r\nthree\r\n",
        b"caf\xc3\xa9 \xff\xfe na\xefve\n\xe2\x82",
        b"  leading and trailing  \n\tTabs\x0bvt\x0cff\n",
        b"no newline at the end",
    ];

    #[test]
    fn upper_lower_change_ascii_letters_only() {
        let all: Vec<u8> = (0..=255u8).collect();
        let up = data(Op::Upper, &all);
        let low = data(Op::Lower, &all);
        for b in 0..=255u8 {
            assert_eq!(up[b as usize], b.to_ascii_uppercase());
            assert_eq!(low[b as usize], b.to_ascii_lowercase());
        }
        for input in AWKWARD {
            assert_eq!(data(Op::Upper, input), input.to_ascii_uppercase());
            assert_eq!(data(Op::Lower, input), input.to_ascii_lowercase());
        }
    }

    #[test]
    fn counts_on_awkward_inputs() {
        for input in AWKWARD {
            let lines = input.iter().filter(|&&b| b == b'\n').count()
                + (input.last().is_some_and(|&b| b != b'\n')) as usize;
            assert_eq!(text(Op::CountLines, input), format!("lines {lines}\n"));
            let words = input
                .split(|&b| is_space(b))
                .filter(|w| !w.is_empty())
                .count();
            assert_eq!(text(Op::CountWords, input), format!("words {words}\n"));
            let chars: usize = input
                .utf8_chunks()
                .map(|c| c.valid().chars().count() + c.invalid().len())
                .sum();
            assert_eq!(
                text(Op::CountChars, input),
                format!("chars {chars}\n"),
                "{input:?}"
            );
        }
        assert_eq!(text(Op::CountWords, b"a  b\t\tc\r\n d"), "words 4\n");
        assert_eq!(
            text(Op::CountChars, b"\xe2\x82\xac\xe2\x82A\xf0\x9f"),
            "chars 6\n"
        );
    }

    #[test]
    fn one_huge_line() {
        let mut big = vec![b'x'; 3 * READ_SIZE + 17];
        assert_eq!(text(Op::CountLines, &big), "lines 1\n");
        assert_eq!(grep_lines("x$", &big), big);
        big.push(b'\n');
        big.extend_from_slice(b"42\n");
        assert_eq!(grep_lines("^4", &big), b"42\n");
        assert_eq!(text(Op::CountWords, &big), "words 2\n");
    }

    #[test]
    fn numbers_with_spaces_cr_and_blank_lines() {
        let input = b" 1 \r\n\n  2\t\r\n\r\n-3\n4.5";
        assert_eq!(text(Op::Sum, input), "count 4\nsum 4.5\n");
        assert_eq!(text(Op::Avg, input), "count 4\navg 1.125\n");
        assert_eq!(text(Op::Min, input), "count 4\nmin -3\n");
        assert_eq!(text(Op::Max, input), "count 4\nmax 4.5\n");
        assert_eq!(text(Op::Sum, b"1\n2\n3\n"), "count 3\nsum 6\n");
        assert_eq!(text(Op::Sum, b""), "count 0\nsum 0\n");
        assert_eq!(text(Op::Avg, b"\n\n"), "count 0\n");
        assert_eq!(text(Op::Max, b""), "count 0\n");
    }

    #[test]
    fn invalid_lines_name_their_line_number() {
        let input = b"1\n\n2\nabc\n4\n";
        let err = run_all(&spec(Op::Sum), input).unwrap_err();
        assert_eq!(err.message, "line 4: not a number: 'abc'");
        assert!(err.input_error);
        let offset = OpSpec {
            line_offset: 100,
            ..spec(Op::Avg)
        };
        let err = run_all(&offset, b"1\n\xff\xfe x\n").unwrap_err();
        assert_eq!(err.message, "line 102: not a number: '\u{fffd}\u{fffd} x'");
        let skip = OpSpec {
            skip_invalid: true,
            ..spec(Op::Sum)
        };
        assert_eq!(
            run_all(&skip, input).unwrap().1,
            "count 3\nsum 7\nskipped 1\n"
        );
        let err = run_all(
            &spec(Op::Sum),
            b"170141183460469231731687303715884105727\n1\n",
        )
        .unwrap_err();
        assert_eq!(err.message, "line 2: integer sum overflows i128");
    }

    #[test]
    fn grep_matches_lines_exactly() {
        let input: &[u8] = b"alpha\nbeta\r\ngamma\n\ndelta\xff\nalpha beta";
        for pattern in [
            "a",
            "^b",
            "a$",
            "^$",
            "",
            "ta\\s",
            "a\\nb",
            "(?i)ALPHA",
            "\\xff",
            "^alpha beta$",
            "z",
        ] {
            assert_eq!(
                grep_lines(pattern, input),
                grep_reference(pattern, input),
                "{pattern}"
            );
        }
        for input in AWKWARD {
            for pattern in ["", "^", "$", "e", "\\s$", "\\w+"] {
                assert_eq!(
                    grep_lines(pattern, input),
                    grep_reference(pattern, input),
                    "{pattern} {input:?}"
                );
            }
        }
    }

    #[test]
    fn utf8_cut_never_splits_a_sequence() {
        assert_eq!(utf8_cut(b"ab\xe2\x82"), 2);
        assert_eq!(utf8_cut(b"ab\xe2\x82\xac"), 5);
        assert_eq!(utf8_cut(b"ab\xf0"), 2);
        assert_eq!(utf8_cut(b"ab\x82\x82\x82"), 5);
        assert_eq!(utf8_cut(b""), 0);
    }

    #[test]
    fn simd_counts_match_plain_counting() {
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in [0, 1, 15, 16, 17, 4079, 4080, 4081, 100_000] {
            let d = &data[..len];
            for needle in [b'\n', 0, 255, 7] {
                assert_eq!(
                    count_byte(d, needle),
                    d.iter().filter(|&&b| b == needle).count() as u64
                );
            }
            let starts = d.iter().filter(|&&b| !(0x80..=0xBF).contains(&b)).count() as u64;
            assert_eq!(count_char_starts(d), starts);
        }
        let newlines = vec![b'\n'; 16 * 255 * 3 + 5];
        assert_eq!(count_byte(&newlines, b'\n'), newlines.len() as u64);
    }
}
