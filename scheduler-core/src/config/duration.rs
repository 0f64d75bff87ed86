//! Go duration strings (`"200ms"`, `"1.5s"`, `"2m"`), as GIE configs write them.

/// Milliseconds in a Go duration string; `None` if it does not parse or is negative.
/// Units: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; several may follow each other (`"1m30s"`).
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    if s == "0" {
        return Some(0);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total_ms = 0.0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest.get(..num_end)?.parse().ok()?;
        rest = rest.get(num_end..)?;
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor_ms = match rest.get(..unit_end)? {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        rest = rest.get(unit_end..)?;
        total_ms += value * factor_ms;
    }
    if total_ms.is_finite() && total_ms >= 0.0 && total_ms < u64::MAX as f64 {
        Some(total_ms as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms as p;

    #[test]
    fn go_durations() {
        assert_eq!(p("200ms"), Some(200));
        assert_eq!(p("2s"), Some(2000));
        assert_eq!(p("1.5s"), Some(1500));
        assert_eq!(p("1m30s"), Some(90_000));
        assert_eq!(p("0"), Some(0));
        assert_eq!(p("5"), None);
        assert_eq!(p("-1s"), None);
        assert_eq!(p("abc"), None);
        assert_eq!(p(""), None);
    }
}
