//! Any bytes as a source's answer to a range request: a head or an error, and a head
//! accepted only when it answers exactly the range asked.
#![no_main]
use fill_client::response::{check_range, parse_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, at))) = parse_head(data) {
        assert!(at <= data.len());
        let (offset, len, size) = (1000, 4096, 1 << 20);
        if check_range(&head, offset, len, size).is_ok() {
            assert!(head.status == 206 && !head.chunked);
            assert_eq!(
                head.content_range.as_deref(),
                Some("bytes 1000-5095/1048576")
            );
            assert!(head.length.is_none_or(|l| l == len));
        }
    }
});
