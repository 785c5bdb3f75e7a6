//! Checks of names and addresses people type, for every module that takes them.

use anyhow::{Result, bail};

pub use fill_core::text::is_name;

/// Checks an email address enough to send to it: one `@`, something on each side, a dot in
/// the domain, no spaces, commas or control characters, at most 254 bytes.
pub fn check_email(email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
    if !ok {
        bail!("{email:?} is not an email address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_names_are_checked() {
        check_email("noc@isp.example").unwrap();
        for bad in [
            "", "a", "a@b", "@b.c", "a b@c.d", "a@b@c.d", "a@b.c\n", "x,y@b.c",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
        assert!(is_name("FRA-3_oca.1"));
        for bad in ["", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(!is_name(bad), "{bad:?}");
        }
    }
}
