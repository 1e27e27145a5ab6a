//! Terminal QR codes for the otpauth URI, with the 4-module quiet zone scanners need.
//!
//! Two renderings of the same module matrix, two modules per character cell (half blocks):
//! - `utf8`: plain characters for the usual light-on-dark terminal (like `qrencode -t UTF8`):
//!   light modules are drawn, dark modules are blank.
//! - `ansi`: explicit black and white colours, correct on any terminal background.

use qrcode::EcLevel;

/// How to draw the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QrStyle {
    /// Half-block characters, for light-on-dark terminals.
    Utf8,
    /// Half blocks with explicit black/white ANSI colours.
    Ansi,
    /// No QR code.
    None,
}

/// The module matrix of `text` (error correction M), quiet zone included: `true` = dark.
pub fn matrix(text: &str) -> Result<Vec<Vec<bool>>, qrcode::types::QrError> {
    pam_ecs_mfa::qr::matrix(text, EcLevel::M)
}

/// Renders `text` in `style` (empty for [`QrStyle::None`]).
pub fn render(text: &str, style: QrStyle) -> Result<String, qrcode::types::QrError> {
    let rows = matrix(text)?;
    match style {
        QrStyle::None => Ok(String::new()),
        QrStyle::Utf8 => Ok(pam_ecs_mfa::qr::half_blocks(&rows)),
        QrStyle::Ansi => {
            let mut out = String::new();
            for pair in rows.chunks(2) {
                let top = &pair[0];
                let bottom = pair.get(1);
                for x in 0..top.len() {
                    // Upper half block: foreground = top module, background = bottom module.
                    let fg = if top[x] { 30 } else { 97 };
                    let bg = if bottom.is_some_and(|r| r[x]) {
                        40
                    } else {
                        107
                    };
                    out.push_str(&format!("\x1b[{fg};{bg}m\u{2580}"));
                }
                out.push_str("\x1b[0m\n");
            }
            Ok(out)
        }
    }
}

/// Pixels per module in the PNG: large enough to scan from a screenshot.
const PNG_SCALE: usize = 8;

/// Writes `text` as a black-on-white PNG QR code (with quiet zone) to `path`, created with
/// mode 0600 (it holds the secret) and never over an existing file.
pub fn write_png(text: &str, path: &std::path::Path) -> Result<(), crate::Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |why: String| {
        crate::Failure::new(crate::Exit::Failure, format!("{}: {why}", path.display()))
    };
    let rows = matrix(text).map_err(|e| fail(format!("cannot draw the QR code: {e}")))?;
    let size = rows.len() * PNG_SCALE;
    let mut pixels = Vec::with_capacity(size * size);
    for row in &rows {
        let line: Vec<u8> = row
            .iter()
            .flat_map(|&dark| std::iter::repeat_n(if dark { 0 } else { 255 }, PNG_SCALE))
            .collect();
        for _ in 0..PNG_SCALE {
            pixels.extend_from_slice(&line);
        }
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), size as u32, size as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&pixels))
        .map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_ecs_mfa::qr::QUIET_ZONE;

    const URI: &str = "otpauth://totp/web-01:alice%40web-01?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=web-01&algorithm=SHA1&digits=6&period=30";

    #[test]
    fn the_png_decodes_to_the_uri() {
        let dir = std::env::temp_dir().join(format!("ecs-mfa-png-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("qr.png");
        let _ = std::fs::remove_file(&path);
        write_png(URI, &path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(write_png(URI, &path).is_err(), "never overwrites");
        // Decoding back to the URI is tested end to end in tests/cli_admin.rs.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_code_has_a_four_module_quiet_zone() {
        let rows = matrix(URI).unwrap();
        let n = rows.len();
        for i in 0..QUIET_ZONE {
            assert!(rows[i].iter().all(|&d| !d) && rows[n - 1 - i].iter().all(|&d| !d));
            assert!(rows.iter().all(|r| !r[i] && !r[n - 1 - i]));
        }
        // The finder pattern starts right after the quiet zone.
        assert!(rows[QUIET_ZONE][QUIET_ZONE]);
    }
}
