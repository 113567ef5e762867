//! File names in records. On Unix a name is any bytes but NUL, not necessarily UTF-8, while a JSON
//! string is Unicode: a record carries the name as text, and, only when the name is not UTF-8, its
//! exact bytes as hex beside it (docs/records.md, "File names").

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The text of a name as records give it: the name itself when it is UTF-8, else with U+FFFD in
/// place of the bytes that are not (readable, not reversible: see `bytes_hex`).
pub fn text(path: &Path) -> Cow<'_, str> {
    path.to_string_lossy()
}

/// The exact bytes of a name that is not UTF-8, as lowercase hex (two digits a byte, in order);
/// `None` for a UTF-8 name, whose text is already exact.
pub fn bytes_hex(name: &OsStr) -> Option<String> {
    if name.to_str().is_some() {
        return None;
    }
    Some(as_bytes(name).iter().map(|b| format!("{b:02x}")).collect())
}

/// The name a record stands for: the hex bytes when the record has them, else its text. `None`
/// for hex that is not an even number of hex digits.
pub fn from_record(text: &str, bytes_hex: Option<&str>) -> Option<PathBuf> {
    let Some(hex) = bytes_hex else { return Some(PathBuf::from(text)) };
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect::<Option<Vec<u8>>>()?;
    Some(PathBuf::from(from_bytes(bytes)))
}

/// The bytes of a name, as the operating system has them.
#[cfg(unix)]
pub fn as_bytes(name: &OsStr) -> &[u8] {
    std::os::unix::ffi::OsStrExt::as_bytes(name)
}

/// Elsewhere names are (potentially ill-formed) UTF-16; their encoded form still round-trips within
/// one process, which is all `as_bytes` is used for there.
#[cfg(not(unix))]
pub fn as_bytes(name: &OsStr) -> &[u8] {
    name.as_encoded_bytes()
}

/// The name made of these bytes.
#[cfg(unix)]
pub fn from_bytes(bytes: Vec<u8>) -> OsString {
    std::os::unix::ffi::OsStringExt::from_vec(bytes)
}

/// Elsewhere only UTF-8 bytes name a file portably; others are replaced.
#[cfg(not(unix))]
pub fn from_bytes(bytes: Vec<u8>) -> OsString {
    OsString::from(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_names_are_their_text() {
        let p = Path::new("dir/ünïcödé 動画.mp4");
        assert_eq!(text(p), "dir/ünïcödé 動画.mp4");
        assert_eq!(bytes_hex(p.as_os_str()), None);
        assert_eq!(from_record(&text(p), None).unwrap(), p);
    }

    #[cfg(unix)]
    #[test]
    fn other_names_round_trip_through_hex() {
        let raw = b"dir/caf\xe9 \xff\xfe.mp4".to_vec();
        let p = PathBuf::from(from_bytes(raw.clone()));
        assert_eq!(text(&p), "dir/caf\u{fffd} \u{fffd}\u{fffd}.mp4");
        let hex = bytes_hex(p.as_os_str()).unwrap();
        assert_eq!(hex, "6469722f636166e920fffe2e6d7034");
        let back = from_record(&text(&p), Some(&hex)).unwrap();
        assert_eq!(as_bytes(back.as_os_str()), &raw[..]);
        for bad in ["6", "zz", "é0"] {
            assert_eq!(from_record("x", Some(bad)), None, "{bad}");
        }
    }
}
