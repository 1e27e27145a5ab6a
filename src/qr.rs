//! QR codes for the otpauth URI: the module matrix with the 4-module quiet zone scanners need,
//! and its rendering with UTF-8 half blocks (two modules per character cell, like
//! `qrencode -t UTF8`: light modules drawn, dark ones blank, for light-on-dark terminals). Used
//! by `mfa-enroll` and by the module at a first-login enrollment.
#![forbid(unsafe_code)]

use qrcode::{Color, EcLevel, QrCode};

/// Quiet zone width in modules (ISO/IEC 18004 minimum).
pub const QUIET_ZONE: usize = 4;

/// The module matrix of `text` with error correction `ec`, quiet zone included: `true` = dark.
pub fn matrix(text: &str, ec: EcLevel) -> Result<Vec<Vec<bool>>, qrcode::types::QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), ec)?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET_ZONE;
    let mut rows = vec![vec![false; size]; size];
    for y in 0..width {
        for x in 0..width {
            rows[y + QUIET_ZONE][x + QUIET_ZONE] = colors[y * width + x] == Color::Dark;
        }
    }
    Ok(rows)
}

/// `rows` drawn with half blocks, one text line per two module rows.
pub fn half_blocks(rows: &[Vec<bool>]) -> String {
    let mut out = String::new();
    for pair in rows.chunks(2) {
        let top = &pair[0];
        let bottom = pair.get(1);
        for x in 0..top.len() {
            out.push(match (top[x], bottom.is_some_and(|r| r[x])) {
                (true, true) => ' ',
                (true, false) => '\u{2584}',
                (false, true) => '\u{2580}',
                (false, false) => '\u{2588}',
            });
        }
        out.push('\n');
    }
    out
}
