//! The range client's reading of a source's answer, as pure functions of its bytes (the
//! fuzz targets call them): the response head, and whether it answers the range asked.

/// A response head, as far as a ranged read needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// `Content-Length`, if given.
    pub length: Option<u64>,
    /// `Content-Range`, if given.
    pub content_range: Option<String>,
    /// Whether a `Transfer-Encoding` was given.
    pub chunked: bool,
    /// Whether the connection may be used again.
    pub keep_alive: bool,
}

/// Parses a response head from the bytes read so far: `Ok(None)` when more are needed,
/// else the head and where the body starts. Why not, when the bytes are not a head.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    let at = match resp.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(at)) => at,
        Err(e) => return Err(format!("a malformed response head: {e}")),
    };
    let mut head = Head {
        status: resp.code.unwrap_or(0),
        length: None,
        content_range: None,
        chunked: false,
        keep_alive: resp.version == Some(1),
    };
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse()
                .map_err(|_| format!("Content-Length {value:?} is not a number"))?;
            if head.length.is_some_and(|l| l != n) {
                return Err("two Content-Length headers that disagree".into());
            }
            head.length = Some(n);
        } else if h.name.eq_ignore_ascii_case("content-range") {
            head.content_range = Some(value.to_owned());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection")
            && value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
        {
            head.keep_alive = false;
        }
    }
    Ok(Some((head, at)))
}

/// Why an answer does not serve the range asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `404`: the source does not hold the file.
    NotFound,
    /// Anything else than the exact range: a lie, saying which.
    Lied(String),
}

/// Whether `head` answers bytes `offset..offset + len` of a file of `size` bytes: `206`
/// with exactly that `Content-Range` and, when given, that `Content-Length`, or `200` when
/// the whole file was asked for; never a chunked body.
pub fn check_range(head: &Head, offset: u64, len: u64, size: u64) -> Result<(), Refusal> {
    let last = offset.saturating_add(len).saturating_sub(1);
    match head.status {
        206 => {
            let expected = format!("bytes {offset}-{last}/{size}");
            let got = head.content_range.as_deref().unwrap_or("");
            if got != expected {
                return Err(Refusal::Lied(format!(
                    "Content-Range {got:?}, asked for {expected:?}"
                )));
            }
        }
        200 if offset == 0 && len == size => {}
        404 => return Err(Refusal::NotFound),
        s => return Err(Refusal::Lied(format!("answered {s} to a range request"))),
    }
    if head.chunked {
        return Err(Refusal::Lied(
            "a chunked body for a range (a range answer must carry Content-Length)".into(),
        ));
    }
    if head.length.is_some_and(|l| l != len) {
        return Err(Refusal::Lied(format!(
            "Content-Length {:?}, asked for {len}",
            head.length
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_ranges() {
        let ok = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\nContent-Length: 10\r\n\r\nbody";
        let (head, at) = parse_head(ok).unwrap().unwrap();
        assert_eq!(&ok[at..], b"body");
        assert_eq!(check_range(&head, 0, 10, 100), Ok(()));
        assert!(matches!(
            check_range(&head, 1, 10, 100),
            Err(Refusal::Lied(_))
        ));
        assert_eq!(parse_head(b"HTTP/1.1 206 Part"), Ok(None));
        assert!(parse_head(b"\0\0garbage\r\n\r\n").is_err());
        let two = b"HTTP/1.1 206 X\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(
            parse_head(two).unwrap_err(),
            "two Content-Length headers that disagree"
        );
    }
}
