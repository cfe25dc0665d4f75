//! Partials of aggregate ops: what one chunk contributes to the answer, in a
//! form that merges exactly. Merging the partials of any split of the input,
//! in any order, gives the same answer byte for byte as one pass over it:
//! integers add exactly in i128, floats are kept as Shewchuk's non-overlapping
//! partials (Python's `math.fsum`), so the final sum is the correctly rounded
//! exact sum whatever the grouping.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::op::Op;

/// One number read from a line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Num {
    Int(#[serde(with = "i128_string")] i128),
    Float(f64),
}

/// The bytes that count as whitespace around numbers and between words:
/// space, \t, \n, \v, \f, \r.
#[inline(always)]
pub fn is_space(b: u8) -> bool {
    // Branch-free, so loops over it vectorize.
    (b == b' ') | (b.wrapping_sub(b'\t') < 5)
}

/// `bytes` without surrounding whitespace (see [`is_space`]).
pub fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

impl Num {
    /// Parse one already trimmed number: an integer (exact in i128), or a
    /// decimal / exponent form (f64). Integers too long for i128 become f64.
    /// `inf`, `nan` and values beyond f64's range are not numbers here.
    pub fn parse(text: &[u8]) -> Option<Num> {
        let digits = match text {
            [b'+' | b'-', rest @ ..] => rest,
            _ => text,
        };
        if digits.is_empty() {
            return None;
        }
        // Fast path: up to 18 digits always fit in i64.
        if digits.len() <= 18 {
            let mut v: i64 = 0;
            let mut all_digits = true;
            for &b in digits {
                let d = b.wrapping_sub(b'0');
                all_digits &= d < 10;
                v = v.wrapping_mul(10).wrapping_add(d as i64);
            }
            if all_digits {
                return Some(Num::Int(if text[0] == b'-' { -v } else { v } as i128));
            }
        }
        if let Some(f) = simple_decimal(digits) {
            return Some(Num::Float(if text[0] == b'-' { -f } else { f }));
        }
        let s = std::str::from_utf8(text).ok()?;
        if digits.iter().all(u8::is_ascii_digit) {
            if let Ok(i) = s.parse::<i128>() {
                return Some(Num::Int(i));
            }
        } else if !text
            .iter()
            .all(|&b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            return None;
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() => Some(Num::Float(f)),
            _ => None,
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Exact numeric order. Floats order by `total_cmp` (-0 before 0), so
    /// ties between them never depend on which came first.
    pub fn cmp_exact(self, other: Num) -> Ordering {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (Num::Float(a), Num::Float(b)) => a.total_cmp(&b),
            (Num::Int(i), Num::Float(f)) => int_cmp_float(i, f),
            (Num::Float(f), Num::Int(i)) => int_cmp_float(i, f).reverse(),
        }
    }
}

/// `ddd.ddd` with at most 15 digits, parsed exactly: the digits as an
/// integer below 2^53 and a power of ten up to 10^22 are both exact f64s, so
/// one division rounds correctly (Clinger's fast path), like `str::parse`.
fn simple_decimal(digits: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    if digits.len() > 16 {
        return None;
    }
    let dot = digits.iter().position(|&b| b == b'.')?;
    let (int, frac) = (&digits[..dot], &digits[dot + 1..]);
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut m: u64 = 0;
    for &b in int.iter().chain(frac) {
        let d = b.wrapping_sub(b'0');
        if d >= 10 {
            return None;
        }
        m = m * 10 + d as u64;
    }
    Some(m as f64 / POW10[frac.len()])
}

/// Compare an integer with a finite float exactly.
fn int_cmp_float(i: i128, f: f64) -> Ordering {
    let fi = i as f64;
    if fi != f {
        // Rounding is monotonic, so the rounded value orders like the exact one.
        return fi.partial_cmp(&f).expect("finite");
    }
    // f is integral and |f| <= 2^127; only 2^127 itself is out of i128's range.
    if f >= 2f64.powi(127) {
        return Ordering::Less;
    }
    i.cmp(&(f as i128))
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

impl Num {
    fn to_json(self) -> Value {
        match self {
            Num::Int(i) => i64::try_from(i)
                .map(Value::from)
                .or_else(|_| u64::try_from(i).map(Value::from))
                // Beyond 64 bits JSON numbers lose precision in most readers.
                .unwrap_or_else(|_| Value::String(i.to_string())),
            Num::Float(x) => Value::from(x),
        }
    }
}

/// Merging or adding overflowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialError(pub String);

impl fmt::Display for PartialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PartialError {}

/// What one chunk contributes to an aggregate op (the `P` frame).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub lines: u64,
    pub words: u64,
    pub chars: u64,
    /// Numbers read.
    pub count: u64,
    /// Non-numeric lines skipped under `--skip-invalid`.
    pub skipped: u64,
    /// Exact sum of the integer lines.
    #[serde(with = "i128_string")]
    pub int_sum: i128,
    /// Exact sum of the float lines as non-overlapping f64 partials.
    pub float_parts: Vec<f64>,
    /// Some line was a decimal: the sum is f64.
    pub saw_float: bool,
    pub min: Option<Num>,
    pub max: Option<Num>,
    /// The run skips invalid lines: answers report `skipped`.
    #[serde(default)]
    pub skip_invalid: bool,
}

impl Partial {
    /// Account for one number read from a line.
    pub fn add_number(&mut self, n: Num) -> Result<(), PartialError> {
        match n {
            Num::Int(i) => {
                self.int_sum = self
                    .int_sum
                    .checked_add(i)
                    .ok_or_else(|| PartialError("integer sum overflows i128".into()))?;
            }
            Num::Float(f) => {
                self.saw_float = true;
                fsum_add(&mut self.float_parts, f)?;
            }
        }
        self.count += 1;
        self.min = Some(pick(self.min, n, Ordering::Less));
        self.max = Some(pick(self.max, n, Ordering::Greater));
        Ok(())
    }

    /// Fold `other` into `self`: the result is as if one pass had read both.
    pub fn merge(&mut self, other: &Partial) -> Result<(), PartialError> {
        self.lines += other.lines;
        self.words += other.words;
        self.chars += other.chars;
        self.count += other.count;
        self.skipped += other.skipped;
        self.int_sum = self
            .int_sum
            .checked_add(other.int_sum)
            .ok_or_else(|| PartialError("integer sum overflows i128".into()))?;
        for &p in &other.float_parts {
            fsum_add(&mut self.float_parts, p)?;
        }
        self.saw_float |= other.saw_float;
        self.skip_invalid |= other.skip_invalid;
        for (mine, theirs, want) in [
            (&mut self.min, other.min, Ordering::Less),
            (&mut self.max, other.max, Ordering::Greater),
        ] {
            if let Some(n) = theirs {
                *mine = Some(pick(*mine, n, want));
            }
        }
        Ok(())
    }

    /// The sum: exact integer when every number was an integer, else the
    /// correctly rounded f64 of the exact sum of all numbers.
    pub fn sum(&self) -> Result<Num, PartialError> {
        if !self.saw_float {
            return Ok(Num::Int(self.int_sum));
        }
        let mut parts = self.float_parts.clone();
        for piece in int_pieces(self.int_sum) {
            fsum_add(&mut parts, piece)?;
        }
        Ok(Num::Float(fsum_total(&parts)))
    }

    /// The mean of all numbers, `None` when there were none.
    pub fn avg(&self) -> Result<Option<f64>, PartialError> {
        if self.count == 0 {
            return Ok(None);
        }
        Ok(Some(self.sum()?.as_f64() / self.count as f64))
    }

    /// The answer of `op` as `key value` lines (what distctl and a plain
    /// `worker-agent op` print). Empty for ops that are not aggregates.
    pub fn render_text(&self, op: Op) -> Result<String, PartialError> {
        let mut out = String::new();
        for (key, value) in self.answer(op)? {
            match value {
                Field::Count(n) => out.push_str(&format!("{key} {n}\n")),
                Field::Num(Some(n)) => out.push_str(&format!("{key} {n}\n")),
                Field::Num(None) => {}
            }
        }
        Ok(out)
    }

    /// The answer of `op` as one JSON object: `{"op":"avg","count":3,"avg":2.5}`
    /// (`null` where there is no value, e.g. the avg of no numbers).
    pub fn to_json(&self, op: Op) -> Result<Value, PartialError> {
        let mut obj = serde_json::Map::new();
        obj.insert("op".into(), json!(op.name()));
        for (key, value) in self.answer(op)? {
            let v = match value {
                Field::Count(n) => json!(n),
                Field::Num(n) => n.map_or(Value::Null, Num::to_json),
            };
            obj.insert(key.into(), v);
        }
        Ok(Value::Object(obj))
    }

    /// The answer's fields in print order.
    fn answer(&self, op: Op) -> Result<Vec<(&'static str, Field)>, PartialError> {
        let count = ("count", Field::Count(self.count));
        let mut fields = match op {
            Op::CountLines => vec![("lines", Field::Count(self.lines))],
            Op::CountWords => vec![("words", Field::Count(self.words))],
            Op::CountChars => vec![("chars", Field::Count(self.chars))],
            Op::Sum => vec![count, ("sum", Field::Num(Some(self.sum()?)))],
            Op::Avg => vec![count, ("avg", Field::Num(self.avg()?.map(Num::Float)))],
            Op::Min => vec![count, ("min", Field::Num(self.min))],
            Op::Max => vec![count, ("max", Field::Num(self.max))],
            Op::Upper | Op::Lower | Op::Grep => vec![],
        };
        if op.is_numeric() && self.skip_invalid {
            fields.push(("skipped", Field::Count(self.skipped)));
        }
        Ok(fields)
    }
}

/// One value of an answer.
enum Field {
    Count(u64),
    /// `None`: no value (no numbers were read).
    Num(Option<Num>),
}

/// The kept extreme of `current` and `n`: `n` wins when it is further in
/// direction `want`, or on a tie when it is an integer and `current` a float
/// (so the pick never depends on the order numbers arrive in).
#[inline]
fn pick(current: Option<Num>, n: Num, want: Ordering) -> Num {
    match (current, n) {
        (None, _) => n,
        (Some(Num::Int(c)), Num::Int(x)) => Num::Int(if x.cmp(&c) == want { x } else { c }),
        (Some(c), _) => {
            let ord = n.cmp_exact(c);
            if ord == want
                || (ord == Ordering::Equal && matches!((n, c), (Num::Int(_), Num::Float(_))))
            {
                n
            } else {
                c
            }
        }
    }
}

/// Add `x` to Shewchuk partials: afterwards they are non-overlapping and
/// their exact sum is the old exact sum plus `x`.
fn fsum_add(parts: &mut Vec<f64>, mut x: f64) -> Result<(), PartialError> {
    let mut i = 0;
    for j in 0..parts.len() {
        let mut y = parts[j];
        if x.abs() < y.abs() {
            std::mem::swap(&mut x, &mut y);
        }
        let hi = x + y;
        if !hi.is_finite() {
            return Err(PartialError("sum overflows f64".into()));
        }
        let lo = y - (hi - x);
        if lo != 0.0 {
            parts[i] = lo;
            i += 1;
        }
        x = hi;
    }
    parts.truncate(i);
    parts.push(x);
    Ok(())
}

/// The correctly rounded (half to even) sum of Shewchuk partials, as
/// CPython's `math.fsum` finishes. Zero is always +0.
fn fsum_total(parts: &[f64]) -> f64 {
    let mut n = parts.len();
    if n == 0 {
        return 0.0;
    }
    n -= 1;
    let mut hi = parts[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = parts[n];
        hi = x + y;
        let yr = hi - x;
        lo = y - yr;
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && parts[n - 1] < 0.0) || (lo > 0.0 && parts[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        if y == x - hi {
            hi = x;
        }
    }
    if hi == 0.0 {
        0.0
    } else {
        hi
    }
}

/// An i128 as at most three f64s that are each exact (43-bit pieces scaled
/// by powers of two) and add up to it exactly.
fn int_pieces(v: i128) -> impl Iterator<Item = f64> {
    const BITS: u32 = 43;
    let mask = (1i128 << BITS) - 1;
    let low = v & mask; // >= 0, two's complement keeps v = high * 2^86 + mid * 2^43 + low
    let mid = (v >> BITS) & mask;
    let high = v >> (2 * BITS); // signed, |high| < 2^42
    [
        high as f64 * 2f64.powi(2 * BITS as i32),
        mid as f64 * 2f64.powi(BITS as i32),
        low as f64,
    ]
    .into_iter()
    .filter(|p| *p != 0.0)
}

mod i128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_pass(nums: &[Num]) -> Partial {
        let mut p = Partial::default();
        for &n in nums {
            p.add_number(n).unwrap();
        }
        p
    }

    /// Every split point, and the pieces merged front-to-back and back-to-front,
    /// through a JSON round trip like the wire.
    fn assert_splits_agree(nums: &[Num]) {
        let whole = one_pass(nums);
        for op in [Op::Sum, Op::Avg, Op::Min, Op::Max] {
            let want = whole.render_text(op).unwrap();
            for a in 0..=nums.len() {
                for b in a..=nums.len() {
                    let parts: Vec<Partial> = [&nums[..a], &nums[a..b], &nums[b..]]
                        .iter()
                        .map(|s| {
                            let p = one_pass(s);
                            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap()
                        })
                        .collect();
                    let mut fwd = Partial::default();
                    let mut rev = Partial::default();
                    for p in &parts {
                        fwd.merge(p).unwrap();
                    }
                    for p in parts.iter().rev() {
                        rev.merge(p).unwrap();
                    }
                    assert_eq!(fwd.render_text(op).unwrap(), want, "{op} split {a} {b}");
                    assert_eq!(rev.render_text(op).unwrap(), want, "{op} reversed {a} {b}");
                    assert_eq!(fwd.count, whole.count);
                }
            }
        }
    }

    fn floats(v: &[f64]) -> Vec<Num> {
        v.iter().map(|&f| Num::Float(f)).collect()
    }

    #[test]
    fn integer_splits_agree() {
        assert_splits_agree(&[
            Num::Int(1),
            Num::Int(-7),
            Num::Int(40),
            Num::Int(2),
            Num::Int(0),
        ]);
        assert_splits_agree(&[
            Num::Int(i128::MAX / 2),
            Num::Int(i128::MAX / 2),
            Num::Int(-5),
        ]);
    }

    #[test]
    fn float_splits_agree_exactly() {
        assert_splits_agree(&floats(&[0.1, 0.2, 0.3, 1e100, -1e100, 1e-100, 3.5]));
        assert_splits_agree(&floats(&[1.0, 1e16, -1e16, 1e-16, 0.1, 0.1, 0.1]));
        // Half-way cases where naive summation rounds differently.
        assert_splits_agree(&floats(&[1.0, 2f64.powi(-53), 2f64.powi(-106), -0.0]));
    }

    #[test]
    fn mixed_splits_agree() {
        assert_splits_agree(&[
            Num::Int(10_000_000_000_000_000_000_000),
            Num::Float(0.5),
            Num::Int(-3),
            Num::Float(1e-30),
            Num::Int(3),
            Num::Float(-0.0),
            Num::Int(0),
        ]);
    }

    #[test]
    fn fsum_matches_python() {
        // Values checked against CPython's math.fsum.
        let p = one_pass(&floats(&[0.1; 10]));
        assert_eq!(p.sum().unwrap(), Num::Float(1.0));
        let p = one_pass(&floats(&[1.0, 1e100, 1.0, -1e100]));
        assert_eq!(p.sum().unwrap(), Num::Float(2.0));
        let p = one_pass(&floats(&[2f64.powi(53), 1.0, 2f64.powi(-100)]));
        assert_eq!(p.sum().unwrap(), Num::Float(2f64.powi(53) + 2.0));
    }

    #[test]
    fn float_overflow_is_an_error() {
        let mut p = Partial::default();
        p.add_number(Num::Float(1.7e308)).unwrap();
        assert!(p.add_number(Num::Float(1.7e308)).is_err());
    }

    #[test]
    fn integer_overflow_is_an_error() {
        let mut p = one_pass(&[Num::Int(i128::MAX)]);
        assert!(p.add_number(Num::Int(1)).is_err());
        assert!(p.clone().merge(&one_pass(&[Num::Int(1)])).is_err());
    }

    #[test]
    fn int_pieces_are_exact() {
        for v in [0, 1, -1, i128::MAX, i128::MIN, 1 << 100, -(1 << 90) + 12345] {
            let mut parts = Vec::new();
            for p in int_pieces(v) {
                fsum_add(&mut parts, p).unwrap();
            }
            let mut back: i128 = 0;
            for p in int_pieces(v) {
                back = back.wrapping_add(p as i128);
            }
            if v != i128::MIN {
                assert_eq!(back, v);
            }
            assert_eq!(fsum_total(&parts), v as f64);
        }
    }

    #[test]
    fn empty_input() {
        let p = Partial::default();
        assert_eq!(p.render_text(Op::Sum).unwrap(), "count 0\nsum 0\n");
        assert_eq!(p.render_text(Op::Avg).unwrap(), "count 0\n");
        assert_eq!(p.render_text(Op::Min).unwrap(), "count 0\n");
        assert_eq!(p.render_text(Op::Max).unwrap(), "count 0\n");
        assert_eq!(p.render_text(Op::CountLines).unwrap(), "lines 0\n");
        assert_eq!(
            p.to_json(Op::Avg).unwrap().to_string(),
            r#"{"avg":null,"count":0,"op":"avg"}"#
        );
    }

    #[test]
    fn rendering() {
        let p = one_pass(&[Num::Int(1), Num::Int(2), Num::Int(4)]);
        assert_eq!(p.render_text(Op::Sum).unwrap(), "count 3\nsum 7\n");
        assert_eq!(
            p.render_text(Op::Avg).unwrap(),
            "count 3\navg 2.3333333333333335\n"
        );
        assert_eq!(p.render_text(Op::Min).unwrap(), "count 3\nmin 1\n");
        assert_eq!(p.render_text(Op::Max).unwrap(), "count 3\nmax 4\n");
        let p = one_pass(&[Num::Int(2), Num::Int(4)]);
        assert_eq!(p.render_text(Op::Avg).unwrap(), "count 2\navg 3\n");
        let p = one_pass(&[Num::Float(1.5), Num::Int(1)]);
        assert_eq!(p.render_text(Op::Sum).unwrap(), "count 2\nsum 2.5\n");
        let mut p = one_pass(&[Num::Float(1.5), Num::Int(1)]);
        p.skip_invalid = true;
        p.skipped = 2;
        assert_eq!(
            p.to_json(Op::Avg).unwrap().to_string(),
            r#"{"avg":1.25,"count":2,"op":"avg","skipped":2}"#
        );
        assert_eq!(
            p.render_text(Op::Avg).unwrap(),
            "count 2\navg 1.25\nskipped 2\n"
        );
    }

    #[test]
    fn min_max_prefer_integers_on_ties_and_order_signed_zeros() {
        let a = one_pass(&[Num::Float(3.0), Num::Int(3)]);
        let b = one_pass(&[Num::Int(3), Num::Float(3.0)]);
        assert_eq!(a.min, Some(Num::Int(3)));
        assert_eq!(b.max, Some(Num::Int(3)));
        let z = one_pass(&floats(&[0.0, -0.0]));
        assert_eq!(z.render_text(Op::Min).unwrap(), "count 2\nmin -0\n");
        assert_eq!(z.render_text(Op::Max).unwrap(), "count 2\nmax 0\n");
    }

    #[test]
    fn exact_int_float_order() {
        let big = 1i128 << 100;
        assert_eq!(
            Num::Int(big + 1).cmp_exact(Num::Float(big as f64)),
            Ordering::Greater
        );
        assert_eq!(
            Num::Int(big - 1).cmp_exact(Num::Float(big as f64)),
            Ordering::Less
        );
        assert_eq!(
            Num::Int(i128::MAX).cmp_exact(Num::Float(2f64.powi(127))),
            Ordering::Less
        );
        assert_eq!(Num::Float(-0.5).cmp_exact(Num::Int(0)), Ordering::Less);
    }

    #[test]
    fn parsing_numbers() {
        assert_eq!(Num::parse(b"42"), Some(Num::Int(42)));
        assert_eq!(Num::parse(b"-42"), Some(Num::Int(-42)));
        assert_eq!(Num::parse(b"+7"), Some(Num::Int(7)));
        assert_eq!(Num::parse(b"2.5"), Some(Num::Float(2.5)));
        assert_eq!(Num::parse(b"1e3"), Some(Num::Float(1000.0)));
        assert_eq!(Num::parse(b".5"), Some(Num::Float(0.5)));
        assert_eq!(Num::parse(b"5."), Some(Num::Float(5.0)));
        assert_eq!(Num::parse(b"-0.1"), Some(Num::Float(-0.1)));
        // The fast decimal path agrees with the standard parser.
        let mut seed = 12345u64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let digits = format!("{}", seed % 10u64.pow(1 + (seed % 15) as u32));
            let dot = (seed >> 40) as usize % (digits.len() + 1);
            let text = format!("{}.{}", &digits[..dot], &digits[dot..]);
            let want: f64 = text.parse().unwrap();
            assert_eq!(
                Num::parse(text.as_bytes()),
                Some(Num::Float(want)),
                "{text}"
            );
        }
        assert_eq!(Num::parse(b"."), None);
        assert_eq!(Num::parse(b"1.2.3"), None);
        assert_eq!(
            Num::parse(b"123456789012345678901234567890123456789012"),
            Some(Num::Float(1.2345678901234568e41))
        );
        for bad in [
            &b""[..],
            b"-",
            b"abc",
            b"1,5",
            b"inf",
            b"nan",
            b"1e999",
            b"1 2",
            b"0x10",
            b"\xff",
        ] {
            assert_eq!(Num::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(trim(b" \t42\r\x0b"), b"42");
        assert_eq!(trim(b" \r "), b"");
    }

    #[test]
    fn partial_json_keeps_floats_and_big_ints_exact() {
        let p = one_pass(&[Num::Int(i128::MAX - 3), Num::Float(0.1), Num::Float(1e-300)]);
        let back: Partial = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
