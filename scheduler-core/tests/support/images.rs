//! Test images: a PNG whose header claims a size, padded with stand-in pixel data, as a `data:`
//! URL the way a chat client inlines an image. Shared by scheduler-core's tests and benches and
//! the e2e tests (included by path).

use base64::Engine as _;

/// A `data:image/png;base64,` URL of a PNG of `width` × `height` pixels and `bytes` bytes.
pub fn png_data_url(width: u32, height: u32, bytes: usize) -> String {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.resize(bytes.max(png.len()), 0x5a);
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    )
}
