//! The digest of Cargo.lock that link-order.txt records (benches/link_order.rs) and
//! build.rs compares, from this one file so both compute the same: FNV-1a, 64 bits.

pub fn lock_digest(lock: &[u8]) -> String {
    let hash = lock.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}
