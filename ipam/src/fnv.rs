//! 64-bit FNV-1a: stable, dependency-free hashing for names derived from data (index files, temporary
//! link names, stable MACs, install fingerprints). Not a security measure anywhere it is used.

/// FNV-1a over a byte stream.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    /// Feeds `bytes`.
    pub fn write(self, bytes: &[u8]) -> Fnv64 {
        Fnv64(
            bytes
                .iter()
                .fold(self.0, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)),
        )
    }

    /// The hash so far.
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// The hash of one byte string.
pub fn fnv64(bytes: &[u8]) -> u64 {
    Fnv64::default().write(bytes).finish()
}

/// The hash of several parts, each followed by a 0xff byte (which no UTF-8 text contains), so that
/// ("ab", "c") and ("a", "bc") differ.
pub fn fnv64_parts(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .fold(Fnv64::default(), |h, part| h.write(part).write(&[0xff]))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_part_boundaries() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv64_parts(&[b"ab", b"c"]), fnv64_parts(&[b"a", b"bc"]));
        assert_eq!(fnv64_parts(&[b"ab"]), fnv64(b"ab\xff"));
    }
}
