//! Prefix-preserving keyed address anonymisation: Crypto-PAn (Xu, Fan, Ammar, Moon, ICNP 2002) with AES-128,
//! for IPv4 and, by the same construction over 128 bits, IPv6. The 32-byte key is the AES key (16 bytes) and
//! the pad material (16 bytes, encrypted once into the pad). Bit i of the output is bit i of the input flipped
//! by the first bit of AES(first i input bits, then the pad's bits): two addresses sharing a k-bit prefix share
//! exactly a k-bit prefix after. `ingest.anonymise` is the Python reference.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::{Aes128, Block};
use hashbrown::HashMap;

pub const KEY_LEN: usize = 32;

pub struct CryptoPan {
    aes: Aes128,
    pad: [u8; 16],
}

impl CryptoPan {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        let aes = Aes128::new(GenericArray::from_slice(&key[..16]));
        let mut pad = *GenericArray::from_slice(&key[16..]);
        aes.encrypt_block(&mut pad);
        CryptoPan {
            aes,
            pad: pad.into(),
        }
    }

    /// The anonymised form of a 4- or 16-byte address, written over it.
    pub fn anonymise(&self, a: &mut [u8]) {
        let bits = a.len() * 8;
        debug_assert!(bits == 32 || bits == 128);
        // The block for bit i only depends on the input's first i bits: build them all, encrypt in one call
        // (the cipher pipelines independent blocks).
        let mut blocks = [Block::default(); 128];
        let mut cur = self.pad;
        for (i, blk) in blocks[..bits].iter_mut().enumerate() {
            blk.copy_from_slice(&cur);
            let (byte, mask) = (i / 8, 0x80u8 >> (i % 8));
            cur[byte] = (cur[byte] & !mask) | (a[byte] & mask);
        }
        self.aes.encrypt_blocks(&mut blocks[..bits]);
        for (i, blk) in blocks[..bits].iter().enumerate() {
            a[i / 8] ^= (blk[0] & 0x80) >> (i % 8);
        }
    }
}

/// A key's anonymiser with a bounded cache of the addresses it has seen (the same addresses recur across
/// flows; one address costs 32 or 128 AES blocks).
pub struct Anonymiser {
    pan: CryptoPan,
    cache: HashMap<[u8; 17], [u8; 16]>, // address, then its length
    max: usize,
}

impl Anonymiser {
    pub fn new(key: &[u8; KEY_LEN], max: usize) -> Self {
        Anonymiser {
            pan: CryptoPan::new(key),
            cache: HashMap::new(),
            max: max.max(1),
        }
    }

    /// The anonymised form of the 4- or 16-byte address `a` (the first `a.len()` bytes of the result).
    pub fn get(&mut self, a: &[u8]) -> [u8; 16] {
        let mut k = [0u8; 17];
        k[..a.len()].copy_from_slice(a);
        k[16] = a.len() as u8;
        if let Some(v) = self.cache.get(&k) {
            return *v;
        }
        let mut v = [0u8; 16];
        v[..a.len()].copy_from_slice(a);
        self.pan.anonymise(&mut v[..a.len()]);
        if self.cache.len() >= self.max {
            self.cache.clear(); // a new working set replaces the old one
        }
        self.cache.insert(k, v);
        v
    }
}

/// Text of address `a` (4 or 16 bytes) as stored: anonymised first when `anon` is given.
pub fn ip_text(anon: Option<&mut Anonymiser>, buf: &mut String, a: &[u8]) {
    match anon {
        None => crate::record::ip_text(buf, a),
        Some(an) => crate::record::ip_text(buf, &an.get(a)[..a.len()]),
    }
}

/// The 32-byte key from Python, refused with a message that never shows it.
pub fn from_key(key: Option<Vec<u8>>, cache: usize) -> Result<Option<Anonymiser>, String> {
    match key {
        None => Ok(None),
        Some(k) => {
            let k: [u8; KEY_LEN] = k.try_into().map_err(|k: Vec<u8>| {
                format!("an anonymisation key is {KEY_LEN} bytes, not {}", k.len())
            })?;
            Ok(Some(Anonymiser::new(&k, cache)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// The reference vectors: the sample key and trace of the Crypto-PAn distribution (IPv4) and the IPv6
    /// addresses of an independent implementation's tests, as test data shared with the Python tests.
    const VECTORS: &str = include_str!("../../tests/data/cryptopan_vectors.txt");

    fn vectors() -> ([u8; 32], Vec<(IpAddr, IpAddr)>) {
        let mut key = None;
        let mut pairs = Vec::new();
        for line in VECTORS.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut f = line.split_whitespace();
            let (a, b) = (f.next().unwrap(), f.next().unwrap());
            if a == "key" {
                let mut k = [0u8; 32];
                for (i, c) in k.iter_mut().enumerate() {
                    *c = u8::from_str_radix(&b[2 * i..2 * i + 2], 16).unwrap();
                }
                key = Some(k);
            } else {
                pairs.push((a.parse().unwrap(), b.parse().unwrap()));
            }
        }
        (key.unwrap(), pairs)
    }

    fn bytes(a: IpAddr) -> Vec<u8> {
        match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    fn anon(p: &CryptoPan, a: &[u8]) -> Vec<u8> {
        let mut v = a.to_vec();
        p.anonymise(&mut v);
        v
    }

    fn common_prefix(a: &[u8], b: &[u8]) -> u32 {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            if x != y {
                return 8 * i as u32 + (x ^ y).leading_zeros();
            }
        }
        8 * a.len() as u32
    }

    #[test]
    fn reference_vectors() {
        let (key, pairs) = vectors();
        assert!(pairs.iter().filter(|(a, _)| a.is_ipv4()).count() >= 70);
        assert!(pairs.iter().any(|(a, _)| a.is_ipv6()));
        let p = CryptoPan::new(&key);
        let mut cached = Anonymiser::new(&key, 8);
        for (raw, want) in pairs {
            assert_eq!(anon(&p, &bytes(raw)), bytes(want), "{raw}");
            let b = bytes(raw);
            assert_eq!(cached.get(&b)[..b.len()], bytes(want)[..], "{raw} (cached)");
        }
    }

    #[test]
    fn cache_stays_bounded_and_right() {
        let (key, _) = vectors();
        let p = CryptoPan::new(&key);
        let mut a = Anonymiser::new(&key, 3);
        for i in 0..20u8 {
            let addr = [10, 0, i % 5, 1];
            assert_eq!(a.get(&addr)[..4], anon(&p, &addr)[..]);
            assert!(a.cache.len() <= 3);
        }
        // the same bytes as IPv4 and as the start of an IPv6 address are different keys
        let v6 = [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(a.get(&v6)[..], anon(&p, &v6)[..]);
    }

    #[test]
    fn key_length_refused_without_showing_it() {
        let e = from_key(Some(vec![0xab; 31]), 1).err().unwrap();
        assert_eq!(e, "an anonymisation key is 32 bytes, not 31");
        assert!(from_key(None, 1).unwrap().is_none());
    }

    proptest! {
        #[test]
        fn prefixes_preserved(key in any::<[u8; 32]>(), a in any::<u32>(), b in any::<u32>(),
                              x in any::<u128>(), y in any::<u128>(), keep in 0u32..128) {
            let p = CryptoPan::new(&key);
            let (a, b) = (a.to_be_bytes(), b.to_be_bytes());
            prop_assert_eq!(common_prefix(&anon(&p, &a), &anon(&p, &b)), common_prefix(&a, &b));
            // IPv6 pairs sharing `keep` bits, as random pairs almost never share many
            let m = if keep == 0 { 0 } else { u128::MAX << (128 - keep) };
            let y = (x & m) | (y & !m);
            let (x, y) = (x.to_be_bytes(), y.to_be_bytes());
            prop_assert_eq!(common_prefix(&anon(&p, &x), &anon(&p, &y)), common_prefix(&x, &y));
        }

        #[test]
        fn keyed(k1 in any::<[u8; 32]>(), k2 in any::<[u8; 32]>(), a in any::<[u8; 16]>()) {
            prop_assume!(k1 != k2);
            let (p1, p2) = (CryptoPan::new(&k1), CryptoPan::new(&k2));
            prop_assert_eq!(anon(&p1, &a), anon(&CryptoPan::new(&k1), &a));
            // different keys: the same 128-bit address maps elsewhere (equal by chance with odds 2^-128)
            prop_assert_ne!(anon(&p1, &a), anon(&p2, &a));
        }
    }

    #[test]
    fn bijective_on_a_sample() {
        let (key, _) = vectors();
        let p = CryptoPan::new(&key);
        // every address of a /16 maps to a distinct address of one /16 (prefix preservation: the same one)
        let mut seen = std::collections::HashSet::new();
        let mut nets = std::collections::HashSet::new();
        for i in 0..=u16::MAX {
            let [h, l] = i.to_be_bytes();
            let out = anon(&p, &[192, 0, h, l]);
            nets.insert([out[0], out[1]]);
            assert!(seen.insert(Ipv4Addr::new(out[0], out[1], out[2], out[3])));
        }
        assert_eq!((seen.len(), nets.len()), (65536, 1));
        let mut seen6 = std::collections::HashSet::new();
        for i in 0..4096u128 {
            let a = (0x2001_0db8u128 << 96) | (i * 0x0001_0000_0000_0001);
            assert!(seen6.insert(Ipv6Addr::from(
                <[u8; 16]>::try_from(anon(&p, &a.to_be_bytes())).unwrap()
            )));
        }
    }
}
