//! Comparing short byte strings (keys, namespaces) without calling `memcmp`. State and timers compare keys of a
//! few bytes millions of times a second; for 8 to 16 bytes, two word loads beat a library call.

use std::cmp::Ordering;

/// The first and last 8 bytes of a slice of 8 to 16 bytes, as big-endian words (they overlap when shorter).
#[inline]
fn words(bytes: &[u8]) -> Option<(u64, u64)> {
    if !(8..=16).contains(&bytes.len()) {
        return None;
    }
    Some((u64::from_be_bytes(*bytes.first_chunk::<8>()?), u64::from_be_bytes(*bytes.last_chunk::<8>()?)))
}

/// Whether two byte strings are equal, as `a == b`.
#[inline]
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match (words(a), words(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Byte-wise (lexicographic) order, as `a.cmp(b)`.
#[inline]
pub fn cmp(a: &[u8], b: &[u8]) -> Ordering {
    // For equal lengths the first word decides unless equal; then the last word covers the remaining bytes (its
    // overlap with the first is equal in both).
    if a.len() == b.len()
        && let (Some((a0, a1)), Some((b0, b1))) = (words(a), words(b))
    {
        return a0.cmp(&b0).then(a1.cmp(&b1));
    }
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn agrees_with_the_slice_operations(
            a in proptest::collection::vec(0u8..4, 0..20),
            b in proptest::collection::vec(0u8..4, 0..20),
        ) {
            prop_assert_eq!(eq(&a, &b), a == b);
            prop_assert_eq!(cmp(&a, &b), a.cmp(&b));
        }

        #[test]
        fn agrees_on_equal_lengths(len in 0usize..20, a in any::<[u8; 20]>(), b in any::<[u8; 20]>()) {
            let (a, b) = (&a[..len], &b[..len]);
            prop_assert_eq!(eq(a, b), a == b);
            prop_assert_eq!(cmp(a, b), a.cmp(b));
            prop_assert!(eq(a, a));
        }
    }
}
