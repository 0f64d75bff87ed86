//! Kubernetes resource quantities as the `flowControl` section writes its limits: a plain
//! number (`1000000000`, `"100"`), a decimal SI suffix (`k`, `M`, `G`, `T`, `P`, `E`: powers of
//! 1000), a binary suffix (`Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`: powers of 1024) or an exponent
//! (`1e9`). Fractions round up to a whole number, as `resource.Quantity.Value()` does.

use serde_json::Value;

/// The whole-number value of a quantity; `None` when it does not parse, is negative or does not
/// fit in a `u64`.
pub fn parse_quantity(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).and_then(from_f64)),
        Value::String(s) => parse_str(s.trim()),
        _ => None,
    }
}

fn from_f64(f: f64) -> Option<u64> {
    let c = libm::ceil(f);
    (c.is_finite() && c >= 0.0 && c < u64::MAX as f64).then_some(c as u64)
}

fn parse_str(s: &str) -> Option<u64> {
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let value: f64 = num.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Ei" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e.get(1..)?.parse().ok()?;
            if !(-18..=18).contains(&exp) {
                return None;
            }
            let mut f = 1.0;
            for _ in 0..exp.unsigned_abs() {
                f *= 10.0;
            }
            if exp < 0 {
                1.0 / f
            } else {
                f
            }
        }
        _ => return None,
    };
    from_f64(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubernetes_quantities() {
        for (v, want) in [
            (json!(1_000_000_000u64), Some(1_000_000_000)),
            (json!("100"), Some(100)),
            (json!("1k"), Some(1000)),
            (json!("500M"), Some(500_000_000)),
            (json!("1Gi"), Some(1 << 30)),
            (json!("512Mi"), Some(512 << 20)),
            (json!("1.5Ki"), Some(1536)),
            (json!("1e9"), Some(1_000_000_000)),
            (json!("0.5"), Some(1)),
            (json!("0"), Some(0)),
            (json!("-1"), None),
            (json!("1Q"), None),
            (json!("abc"), None),
            (json!(true), None),
            (json!(-5), None),
        ] {
            assert_eq!(parse_quantity(&v), want, "{v}");
        }
    }
}
