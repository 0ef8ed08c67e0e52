//! Key groups: how keyed records and keyed state are spread over subtasks.
//!
//! A key's group is `hash(key) % max_parallelism`; subtask `i` of `p` owns a contiguous range of groups (the same
//! arithmetic as Flink's), so state saved at one parallelism can be restored at another by moving whole groups.
//! The hash is part of the savepoint format: changing it would send restored keys to the wrong subtasks.

use std::ops::RangeInclusive;

/// A key group index.
pub type KeyGroup = u16;

/// 64-bit FNV-1a followed by a SplitMix64 finaliser (FNV alone spreads short keys poorly in the low bits).
pub fn key_hash(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(hash)
}

/// SplitMix64's finaliser, also used by the benchmark generator.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key group of `key`.
pub fn key_group(key: &[u8], max_parallelism: u32) -> KeyGroup {
    (key_hash(key) % u64::from(max_parallelism.max(1))) as KeyGroup
}

/// The subtask (of `parallelism`) that owns `group`.
pub fn subtask_of(group: KeyGroup, max_parallelism: u32, parallelism: u32) -> u32 {
    (u32::from(group) * parallelism / max_parallelism.max(1)).min(parallelism.saturating_sub(1))
}

/// The key groups subtask `subtask` of `parallelism` owns.
pub fn key_groups_of(subtask: u32, parallelism: u32, max_parallelism: u32) -> RangeInclusive<KeyGroup> {
    let (i, p, m) = (subtask, parallelism.max(1), max_parallelism.max(1));
    let start = (i * m).div_ceil(p);
    let end = ((i + 1) * m - 1) / p;
    start as KeyGroup..=end as KeyGroup
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_group_has_exactly_one_owner(p in 1u32..=64, extra in 0u32..200) {
            let m = p + extra;
            for group in 0..m {
                let owner = subtask_of(group as KeyGroup, m, p);
                prop_assert!(owner < p);
                prop_assert!(key_groups_of(owner, p, m).contains(&(group as KeyGroup)));
                let owners = (0..p).filter(|&s| key_groups_of(s, p, m).contains(&(group as KeyGroup))).count();
                prop_assert_eq!(owners, 1);
            }
        }

        #[test]
        fn key_groups_are_in_range(key in proptest::collection::vec(any::<u8>(), 0..32), m in 1u32..1000) {
            prop_assert!(u32::from(key_group(&key, m)) < m);
        }
    }

    #[test]
    fn hash_is_stable() {
        // Savepoints depend on these values: they must never change.
        assert_eq!(key_hash(b""), mix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(key_group(b"user-1", 128), key_group(b"user-1", 128));
        let spread: std::collections::HashSet<_> = (0..1000u32).map(|i| key_group(&i.to_le_bytes(), 128)).collect();
        assert!(spread.len() > 120, "keys spread over nearly all groups, got {}", spread.len());
    }
}
