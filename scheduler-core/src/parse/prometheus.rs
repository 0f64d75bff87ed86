//! Prometheus text exposition format 0.0.4, as model servers serve it.
//!
//! A zero-copy sample iterator: names, raw label blocks and values borrow the page; label values
//! are unescaped only when asked for. It tolerates everything real servers send
//! (docs/SOURCES.md#exposition-quirks): label values with commas, braces, quotes and escapes; `NaN`, `±Inf` and exponents;
//! optional timestamps (integer milliseconds, or OpenMetrics float seconds); `_created` series;
//! blank, `# HELP`/`# TYPE`/`# UNIT`/`# EOF` and other comment lines; CRLF line ends; a missing
//! final newline; any label order. Anything else is garbage and yields a
//! [`MetricsParseError`] naming the line.

use alloc::borrow::Cow;
use alloc::string::String;

use crate::error::MetricsParseError;

/// One sample line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    /// Metric name as written (may contain `:`).
    pub name: &'a str,
    /// The text between `{` and `}` (empty when there is no label block).
    pub raw_labels: &'a str,
    /// The sample value.
    pub value: f64,
    /// The optional timestamp as written.
    pub timestamp: Option<&'a str>,
}

impl<'a> Sample<'a> {
    /// Iterates the `(name, value)` label pairs, values unescaped.
    pub fn labels(&self) -> Labels<'a> {
        Labels {
            rest: self.raw_labels,
        }
    }

    /// The value of label `key`, unescaped; `None` when absent.
    pub fn label(&self, key: &str) -> Option<Cow<'a, str>> {
        self.labels().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Iterator over a sample's labels (the block was validated when the sample was parsed).
#[derive(Clone, Debug)]
pub struct Labels<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Labels<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest.trim_start_matches([' ', '\t', ',']);
        if s.is_empty() {
            return None;
        }
        let eq = s.find('=')?;
        let name = s.get(..eq)?.trim();
        let after = s.get(eq + 1..)?.trim_start();
        let body = after.strip_prefix('"')?;
        let end = closing_quote(body.as_bytes())?;
        let raw = body.get(..end)?;
        self.rest = body.get(end + 1..).unwrap_or("");
        Some((name, unescape(raw)))
    }
}

/// Index of the unescaped closing quote in `b`.
fn closing_quote(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Iterator over the samples of a page; yields an error (and then stops) at the first bad line.
#[derive(Clone, Debug)]
pub struct Samples<'a> {
    rest: Option<&'a str>,
    line: usize,
}

/// Iterates the samples of `text`.
pub fn samples(text: &str) -> Samples<'_> {
    Samples {
        rest: Some(text),
        line: 0,
    }
}

impl Samples<'_> {
    /// 1-based number of the line the last sample came from.
    pub fn line(&self) -> usize {
        self.line
    }
}

/// Checks a whole page; returns the number of samples.
///
/// # Errors
/// The first malformed line.
pub fn validate(text: &str) -> Result<usize, MetricsParseError> {
    let mut n = 0;
    for s in samples(text) {
        s?;
        n += 1;
    }
    Ok(n)
}

impl<'a> Iterator for Samples<'a> {
    type Item = Result<Sample<'a>, MetricsParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let text = self.rest?;
            let (line, rest) = match text.find('\n') {
                Some(i) => (text.get(..i).unwrap_or(""), text.get(i + 1..)),
                None => (text, None),
            };
            self.rest = rest;
            self.line += 1;
            let line = line
                .strip_suffix('\r')
                .unwrap_or(line)
                .trim_start_matches([' ', '\t']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            return Some(match parse_line(line) {
                Ok(s) => Ok(s),
                Err(reason) => {
                    self.rest = None;
                    Err(MetricsParseError {
                        line: self.line,
                        reason,
                    })
                }
            });
        }
    }
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

fn parse_line(line: &str) -> Result<Sample<'_>, &'static str> {
    let b = line.as_bytes();
    match b.first() {
        Some(&c) if is_name_start(c) => {}
        _ => return Err("sample line must start with a metric name"),
    }
    let name_end = b.iter().position(|&c| !is_name_char(c)).unwrap_or(b.len());
    let name = line.get(..name_end).ok_or("bad metric name")?;
    let after_name = line.get(name_end..).ok_or("bad metric name")?;
    let mut rest = after_name;
    let mut raw_labels = "";
    if let Some(after) = after_name.trim_start_matches([' ', '\t']).strip_prefix('{') {
        let close = label_block_end(after.as_bytes())?;
        raw_labels = after.get(..close).ok_or("bad label block")?;
        rest = after.get(close + 1..).ok_or("bad label block")?;
    }

    if !rest.starts_with([' ', '\t']) {
        return Err("expected whitespace before the value");
    }
    let mut fields = rest.split_ascii_whitespace();
    let value_text = fields.next().ok_or("missing value")?;
    let value = parse_value(value_text).ok_or("value is not a number")?;
    let timestamp = fields.next();
    if let Some(ts) = timestamp {
        if ts.parse::<f64>().map_or(true, |v| !v.is_finite()) {
            return Err("timestamp is not a number");
        }
    }
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp");
    }
    Ok(Sample {
        name,
        raw_labels,
        value,
        timestamp,
    })
}

/// Validates a label block (the bytes after `{`) and returns the index of its `}`.
fn label_block_end(b: &[u8]) -> Result<usize, &'static str> {
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while matches!(b.get(*i), Some(b' ' | b'\t')) {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        match b.get(i) {
            Some(b'}') => return Ok(i),
            Some(&c) if is_name_start(c) && c != b':' => {}
            Some(_) => return Err("bad label name"),
            None => return Err("unterminated label block"),
        }
        while b
            .get(i)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
        {
            i += 1;
        }
        skip_ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err("expected '=' after label name");
        }
        i += 1;
        skip_ws(&mut i);
        if b.get(i) != Some(&b'"') {
            return Err("label value must be quoted");
        }
        i += 1;
        let tail = b.get(i..).ok_or("unterminated label value")?;
        i += closing_quote(tail).ok_or("unterminated label value")? + 1;
        skip_ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i),
            _ => return Err("expected ',' or '}' after label value"),
        }
    }
}

/// Go/Python float spellings: digits, exponents, `NaN`, `+Inf`, `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => {
            // Rust also accepts "inf"/"infinity"/"nan" spelled other ways; Prometheus clients
            // never send those and accepting them is harmless.
            s.parse::<f64>().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn awkward_but_valid_lines() {
        let text = "# HELP x y\n# TYPE x gauge\n\nx 1\r\nx{} 2\ny{a=\"1,2\",b=\"q\\\"u{o}te\\n\"} 1.843221e+06 1700000000000\n\
                    z{le=\"+Inf\"} +Inf\nn NaN\nm -Inf\n# EOF\nlast{x=\"\"} 7";
        let got: Vec<_> = samples(text).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 7);
        assert_eq!(got[2].name, "y");
        assert_eq!(got[2].value, 1.843221e6);
        assert_eq!(got[2].label("a").unwrap(), "1,2");
        assert_eq!(got[2].label("b").unwrap(), "q\"u{o}te\n");
        assert_eq!(got[2].timestamp, Some("1700000000000"));
        assert!(got[3].value.is_infinite());
        assert!(got[4].value.is_nan());
        assert_eq!(got[6].label("x").unwrap(), "");
    }

    #[test]
    fn garbage_is_rejected_with_line_number() {
        for (text, line) in [
            ("ok 1\n<html>\n", 2),
            ("x{a=1} 2", 1),
            ("x{a=\"1\" 2", 1),
            ("x abc", 1),
            ("x", 1),
            ("x 1 2 3", 1),
            ("x{a=\"1\"}2", 1),
            ("\u{0}\u{1}", 1),
        ] {
            let err = validate(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }
}
