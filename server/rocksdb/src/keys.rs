//! The composite key: `group:u16 BE ‖ len(key):u32 BE ‖ key ‖ namespace`.
//!
//! The length in front of the key is what makes the split unambiguous: without it, key `a` with namespace `b` and
//! key `ab` with the empty namespace would be the same bytes. With it, the bytes up to the end of the key (the
//! *key prefix*) are the same for every namespace of one key and differ between keys, so one key's namespaces are
//! contiguous in RocksDB's byte order and sorted by namespace bytes.

use eddy_engine::keys::KeyGroup;
use eddy_engine::state::{StateError, StateKey};

/// Bytes before the key: the group and the key's length.
const HEADER: usize = 2 + 4;

/// Writes the key prefix of `key` into `out` (cleared first).
pub(crate) fn prefix(out: &mut Vec<u8>, key: StateKey<'_>) -> Result<(), StateError> {
    let len = u32::try_from(key.key.len())
        .map_err(|_| StateError(format!("a key of {} bytes is too long for the RocksDB backend", key.key.len())))?;
    out.clear();
    out.extend_from_slice(&key.group.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(key.key);
    Ok(())
}

/// Writes the composite key of `(key, ns)` into `out` (cleared first).
pub(crate) fn composite(out: &mut Vec<u8>, key: StateKey<'_>, ns: &[u8]) -> Result<(), StateError> {
    prefix(out, key)?;
    out.extend_from_slice(ns);
    Ok(())
}

/// Length of the key prefix of a stored composite key.
pub(crate) fn prefix_len(stored: &[u8]) -> Result<usize, StateError> {
    let len = stored
        .get(2..HEADER)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) as usize)
        .ok_or_else(|| corrupt(stored))?;
    let end = HEADER.checked_add(len).filter(|end| *end <= stored.len()).ok_or_else(|| corrupt(stored))?;
    Ok(end)
}

/// Splits a stored composite key into group, key and namespace.
pub(crate) fn split(stored: &[u8]) -> Result<(KeyGroup, &[u8], &[u8]), StateError> {
    let end = prefix_len(stored)?;
    let group = u16::from_be_bytes([stored[0], stored[1]]);
    Ok((group, &stored[HEADER..end], &stored[end..]))
}

/// The smallest byte string greater than every string that starts with `prefix`; none if there is none (all
/// bytes 0xff). The upper bound of a prefix scan.
pub(crate) fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|b| *b != 0xff)?;
    let mut next = prefix[..=last].to_vec();
    next[last] += 1;
    Some(next)
}

fn corrupt(stored: &[u8]) -> StateError {
    StateError(format!("corrupt key in the RocksDB state store: {stored:02x?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(group: KeyGroup, key: &[u8], ns: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        composite(&mut out, StateKey { group, key }, ns).expect("encode");
        out
    }

    #[test]
    fn the_layout_is_pinned() {
        assert_eq!(encoded(0x0102, b"ab", b"n"), [1, 2, 0, 0, 0, 2, b'a', b'b', b'n']);
        assert_eq!(encoded(0, b"", b""), [0; 6]);
    }

    #[test]
    fn a_key_that_is_a_prefix_of_another_stays_apart() {
        let short = encoded(0, b"a", b"b");
        let long = encoded(0, b"ab", b"");
        assert_ne!(short, long);
        assert_eq!(split(&short).expect("split"), (0, &b"a"[..], &b"b"[..]));
        assert_eq!(split(&long).expect("split"), (0, &b"ab"[..], &b""[..]));
    }

    #[test]
    fn namespaces_of_a_key_sort_by_bytes_and_stay_together() {
        let mut all = [
            encoded(1, b"k", b"\xff"),
            encoded(1, b"k", b""),
            encoded(1, b"k", b"\x00\x00"),
            encoded(1, b"k", b"\x00"),
            encoded(1, b"k\x00", b""),
            encoded(0, b"kk", b""),
        ];
        all.sort();
        let order: Vec<_> = all.iter().map(|k| split(k).expect("split")).collect();
        assert_eq!(
            order,
            [
                (0, &b"kk"[..], &b""[..]),
                (1, b"k", b""),
                (1, b"k", b"\x00"),
                (1, b"k", b"\x00\x00"),
                (1, b"k", b"\xff"),
                (1, b"k\x00", b""),
            ]
        );
    }

    #[test]
    fn corrupt_keys_are_errors() {
        assert!(split(&[0, 0, 0]).is_err());
        assert!(split(&[0, 0, 0, 0, 0, 9, b'a']).is_err());
    }

    #[test]
    fn successor_bounds_a_prefix() {
        assert_eq!(successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(successor(b"\xff"), None);
    }
}
