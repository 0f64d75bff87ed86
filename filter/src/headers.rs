//! A request's headers, read from the host in one call and held in one buffer.
//!
//! The flow reads the request headers when they arrive (the picker's own headers, the declared
//! body length, the content type) and again when the body is complete (every header, for the
//! plugins). Copying each name and value into its own `String` cost two allocations per header
//! (~20 per request) and a second read of Envoy's header map; a [`HeaderBlock`] is read once,
//! holds every name and value in one `String` and hands out borrowed `&str`s.

/// Request headers in one buffer: `text` holds each name followed by its value, `spans` where
/// they are. Names as the host gives them (lower-case in Envoy); bytes that are not UTF-8 are
/// replaced (lossy), as a header value a plugin compares with text cannot match them anyway.
#[derive(Debug, Default, Clone)]
pub struct HeaderBlock {
    text: String,
    /// Per header: name start, value start (= name end), value end; byte offsets into `text`.
    spans: Vec<[u32; 3]>,
}

impl HeaderBlock {
    /// An empty block with room for `headers` headers of `bytes` bytes in all.
    pub fn with_capacity(headers: usize, bytes: usize) -> Self {
        HeaderBlock {
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(headers),
        }
    }

    /// Appends one header. A block larger than 4 GiB is not representable: such a header is
    /// dropped (Envoy's own header limit is far below).
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.text.len();
        push_lossy(&mut self.text, name);
        let mid = self.text.len();
        push_lossy(&mut self.text, value);
        let end = self.text.len();
        match (u32::try_from(start), u32::try_from(mid), u32::try_from(end)) {
            (Ok(s), Ok(m), Ok(e)) => self.spans.push([s, m, e]),
            _ => self.text.truncate(start),
        }
    }

    /// Every header in order: `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|&[s, m, e]| {
            let (s, m, e) = (s as usize, m as usize, e as usize);
            (
                self.text.get(s..m).unwrap_or_default(),
                self.text.get(m..e).unwrap_or_default(),
            )
        })
    }

    /// The first value of header `name` (ASCII case-insensitive); `None` for an empty name.
    pub fn get(&self, name: &str) -> Option<&str> {
        if name.is_empty() {
            return None;
        }
        // Compare lengths from the spans first: most headers differ in length from `name`, and
        // slicing `text` (two char-boundary checks) costs more than the comparison itself.
        let wanted = name.len();
        self.spans
            .iter()
            .filter(|&&[s, m, _]| m.saturating_sub(s) as usize == wanted)
            .find_map(|&[s, m, e]| {
                let key = self.text.get(s as usize..m as usize)?;
                key.eq_ignore_ascii_case(name)
                    .then(|| self.text.get(m as usize..e as usize))
                    .flatten()
            })
    }

    /// Forgets every value of header `name` (ASCII case-insensitive), as the host's removal does.
    pub fn remove(&mut self, name: &str) {
        let text = &self.text;
        self.spans.retain(|&[s, m, _]| {
            !text
                .get(s as usize..m as usize)
                .is_some_and(|k| k.eq_ignore_ascii_case(name))
        });
    }

    /// Headers held.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when no header is held.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

impl<'a, K: AsRef<[u8]> + 'a, V: AsRef<[u8]> + 'a> FromIterator<&'a (K, V)> for HeaderBlock {
    fn from_iter<I: IntoIterator<Item = &'a (K, V)>>(iter: I) -> Self {
        let mut b = HeaderBlock::default();
        for (k, v) in iter {
            b.push(k.as_ref(), v.as_ref());
        }
        b
    }
}

fn push_lossy(out: &mut String, bytes: &[u8]) {
    match core::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_names_and_values_in_order_and_finds_the_first_value() {
        let b: HeaderBlock = [
            (":path", "/v1/chat/completions"),
            ("x-a", "1"),
            ("content-type", "application/json"),
            ("x-a", "2"),
        ]
        .iter()
        .collect();
        assert_eq!(b.len(), 4);
        assert_eq!(b.get("x-a"), Some("1"));
        assert_eq!(b.get("Content-Type"), Some("application/json"));
        assert_eq!(b.get("absent"), None);
        assert_eq!(b.get(""), None);
        let all: Vec<_> = b.iter().collect();
        assert_eq!(all[0], (":path", "/v1/chat/completions"));
        assert_eq!(all[3], ("x-a", "2"));
    }

    #[test]
    fn remove_drops_every_value_of_a_name_and_keeps_the_rest() {
        let mut b: HeaderBlock = [("x-a", "1"), ("x-b", "2"), ("X-A", "3")].iter().collect();
        b.remove("x-a");
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![("x-b", "2")]);
        b.remove("x-b");
        assert!(b.is_empty());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_not_refused() {
        let mut b = HeaderBlock::with_capacity(1, 8);
        b.push(b"x-bin", &[b'a', 0xff, b'b']);
        assert_eq!(b.get("x-bin"), Some("a\u{fffd}b"));
        b.push(b"x-next", b"ok");
        assert_eq!(b.get("x-next"), Some("ok"));
    }
}
