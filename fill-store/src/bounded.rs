//! Reading files from outside within a stated limit: a config pointed at `/dev/zero`, an
//! endless pipe or a huge file ends in an error naming the file and the limit, after
//! reading at most one byte past it.

use std::io::{self, Read};
use std::path::Path;

/// The most a configuration file (sources, site, server, simulation) may hold: 1 MiB,
/// thousands of times a real one.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads a UTF-8 text file of at most `limit` bytes. Past the limit: an `InvalidData`
/// error saying so.
pub fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "larger than the limit of {} for this file",
                fill_core::size::format_size(limit)
            ),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_stops_at_the_limit() {
        let e = read_text(Path::new("/dev/zero"), 1024).unwrap_err();
        // Zeros are valid UTF-8: it is the limit that stops it.
        assert_eq!(
            e.to_string(),
            "larger than the limit of 1 KiB for this file"
        );
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, "x".repeat(1024)).unwrap();
        assert_eq!(read_text(&p, 1024).unwrap().len(), 1024);
    }
}
