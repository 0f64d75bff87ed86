//! Just enough of the protobuf wire format and gRPC's message framing to read the few fields the
//! gRPC parsers need, in place, from untrusted bytes (the gRPC parsers: `vertexai-parser`,
//! `vllmgrpc-parser`; vLLM gRPC response usage in [`super::vllm_grpc`]).
//!
//! Protobuf (the encoding spec, in our words): a message is a sequence of fields, each a varint
//! key `field_number << 3 | wire_type` and a value: wire type 0 a varint (7 bits per byte, low
//! group first, high bit set on every byte but the last; at most 10 bytes), 1 eight bytes, 2 a
//! varint length and that many bytes (strings, bytes, sub-messages, packed repeated scalars),
//! 5 four bytes. Types 3 and 4 (groups) are obsolete and rejected here. A singular field that
//! appears several times takes its last value; a repeated scalar may come packed (one wire-type-2
//! field) or one field per element, and parsers must accept both.
//!
//! gRPC over HTTP/2 carries each message as a 5-byte prefix (a compressed flag, 0 or 1, and the
//! message length as a big-endian u32) followed by the message. Compressed messages are not read
//! (the peers do not compress by default; upstream rejects them too).

/// Why a protobuf message or gRPC frame could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A varint key, value or length ran past the end, or was longer than 10 bytes.
    Truncated,
    /// A value's declared length runs past the end of its message.
    PastEnd,
    /// Wire type 3, 4, 6 or 7.
    UnsupportedWireType,
    /// Fewer than 5 bytes, or fewer than the frame's declared length.
    ShortFrame,
    /// The frame's compressed flag is set.
    Compressed,
}

impl WireError {
    /// A short description for error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated varint",
            WireError::PastEnd => "field past the end of its message",
            WireError::UnsupportedWireType => "unsupported wire type",
            WireError::ShortFrame => "shorter than its gRPC frame",
            WireError::Compressed => "compressed gRPC messages are not supported",
        }
    }
}

/// A protobuf varint at the start of `b`: `(value, bytes used)`; `None` when truncated or longer
/// than 10 bytes.
pub fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// One field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (the raw little-endian bits).
    Fixed64(u64),
    /// Wire type 2: a string, bytes, a sub-message or a packed repeated scalar.
    Bytes(&'a [u8]),
    /// Wire type 5 (the raw little-endian bits).
    Fixed32(u32),
}

/// The fields of a message in wire order, as `(field number, value)`; stops after the first
/// error. See the module docs.
pub struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Iterates the fields of `message`.
pub fn fields(message: &[u8]) -> Fields<'_> {
    Fields {
        rest: message,
        failed: false,
    }
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(WireError::PastEnd)?;
        self.rest = tail;
        Ok(head)
    }

    fn take_varint(&mut self) -> Result<u64, WireError> {
        let (v, n) = varint(self.rest).ok_or(WireError::Truncated)?;
        self.take(n)?;
        Ok(v)
    }

    fn next_field(&mut self) -> Result<(u64, Value<'a>), WireError> {
        let key = self.take_varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.take_varint()?),
            1 => {
                let b = self.take(8)?;
                Value::Fixed64(u64::from_le_bytes(
                    b.try_into().map_err(|_| WireError::PastEnd)?,
                ))
            }
            2 => {
                let len = self.take_varint()?;
                let len = usize::try_from(len).map_err(|_| WireError::PastEnd)?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes(
                    b.try_into().map_err(|_| WireError::PastEnd)?,
                ))
            }
            _ => return Err(WireError::UnsupportedWireType),
        };
        Ok((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let r = self.next_field();
        self.failed = r.is_err();
        Some(r)
    }
}

/// The last length-delimited value of field `number` in `message` (a singular string, bytes or
/// sub-message field), or `None` when absent.
///
/// # Errors
/// The message is malformed.
pub fn last_bytes(message: &[u8], number: u64) -> Result<Option<&[u8]>, WireError> {
    let mut found = None;
    for f in fields(message) {
        if let (n, Value::Bytes(b)) = f? {
            if n == number {
                found = Some(b);
            }
        }
    }
    Ok(found)
}

/// Appends the elements of a repeated varint field (`uint32`, `uint64`, `int32`…) to `out`:
/// one field's value, packed (`Value::Bytes`) or one element (`Value::Varint`).
///
/// # Errors
/// A packed run ends inside a varint.
pub fn push_varints(value: Value<'_>, out: &mut alloc::vec::Vec<u64>) -> Result<(), WireError> {
    match value {
        Value::Varint(v) => out.push(v),
        Value::Bytes(mut b) => {
            while !b.is_empty() {
                let (v, n) = varint(b).ok_or(WireError::Truncated)?;
                out.push(v);
                b = b.get(n..).unwrap_or_default();
            }
        }
        _ => {}
    }
    Ok(())
}

/// The message of a body holding one uncompressed gRPC frame (bytes after the frame are
/// ignored, as upstream does).
///
/// # Errors
/// [`WireError::ShortFrame`], [`WireError::Compressed`].
pub fn grpc_message(body: &[u8]) -> Result<&[u8], WireError> {
    let (prefix, rest) = body.split_at_checked(5).ok_or(WireError::ShortFrame)?;
    let (flag, len) = frame_prefix(prefix).ok_or(WireError::ShortFrame)?;
    if flag != 0 {
        return Err(WireError::Compressed);
    }
    rest.get(..len).ok_or(WireError::ShortFrame)
}

/// `(compressed flag, message length)` of a 5-byte gRPC frame prefix.
pub fn frame_prefix(prefix: &[u8]) -> Option<(u8, usize)> {
    let flag = *prefix.first()?;
    let len = u32::from_be_bytes(prefix.get(1..5)?.try_into().ok()?);
    Some((flag, len as usize))
}

/// Encoding, for tests and the test servers: a varint.
pub fn put_varint(out: &mut alloc::vec::Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encoding: a length-delimited field.
pub fn put_bytes(out: &mut alloc::vec::Vec<u8>, number: u64, value: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// Encoding: a varint field.
pub fn put_uint(out: &mut alloc::vec::Vec<u8>, number: u64, value: u64) {
    put_varint(out, number << 3);
    put_varint(out, value);
}

/// Encoding: `message` as one uncompressed gRPC frame.
pub fn grpc_frame(message: &[u8]) -> alloc::vec::Vec<u8> {
    let mut out = alloc::vec::Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn fields_round_trip_every_wire_type() {
        let mut m = Vec::new();
        put_uint(&mut m, 1, 300);
        put_bytes(&mut m, 2, b"abc");
        m.push((3 << 3) | 1);
        m.extend_from_slice(&7u64.to_le_bytes());
        m.push((4 << 3) | 5);
        m.extend_from_slice(&9u32.to_le_bytes());
        let got: Vec<_> = fields(&m).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            vec![
                (1, Value::Varint(300)),
                (2, Value::Bytes(b"abc")),
                (3, Value::Fixed64(7)),
                (4, Value::Fixed32(9)),
            ]
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert_eq!(fields(&[0x08]).next(), Some(Err(WireError::Truncated)));
        assert_eq!(
            fields(&[0x12, 5, b'a']).next(),
            Some(Err(WireError::PastEnd))
        );
        assert_eq!(
            fields(&[0x0b]).next(),
            Some(Err(WireError::UnsupportedWireType))
        );
        assert_eq!(fields(&[0xff; 11]).next(), Some(Err(WireError::Truncated)));
        // A huge declared length does not overflow.
        let mut m = vec![0x12];
        put_varint(&mut m, u64::MAX);
        assert_eq!(fields(&m).next(), Some(Err(WireError::PastEnd)));
        // Iteration stops after an error.
        assert_eq!(fields(&[0x0b, 0x08, 1]).count(), 1);
    }

    #[test]
    fn last_value_of_a_singular_field_wins() {
        let mut m = Vec::new();
        put_bytes(&mut m, 2, b"first");
        put_bytes(&mut m, 2, b"second");
        assert_eq!(last_bytes(&m, 2).unwrap(), Some(&b"second"[..]));
        assert_eq!(last_bytes(&m, 3).unwrap(), None);
    }

    #[test]
    fn repeated_varints_packed_or_not() {
        let mut packed = Vec::new();
        for v in [1u64, 300, 70000] {
            put_varint(&mut packed, v);
        }
        let mut out = Vec::new();
        push_varints(Value::Bytes(&packed), &mut out).unwrap();
        push_varints(Value::Varint(5), &mut out).unwrap();
        assert_eq!(out, vec![1, 300, 70000, 5]);
        assert_eq!(
            push_varints(Value::Bytes(&[0x80]), &mut out),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn grpc_frames() {
        let f = grpc_frame(b"hello");
        assert_eq!(grpc_message(&f).unwrap(), b"hello");
        assert_eq!(grpc_message(&f[..4]), Err(WireError::ShortFrame));
        assert_eq!(grpc_message(&f[..7]), Err(WireError::ShortFrame));
        let mut c = f.clone();
        c[0] = 1;
        assert_eq!(grpc_message(&c), Err(WireError::Compressed));
        // Lengths near u32::MAX do not overflow.
        assert_eq!(
            grpc_message(&[0, 0xff, 0xff, 0xff, 0xff, 1]),
            Err(WireError::ShortFrame)
        );
    }
}
