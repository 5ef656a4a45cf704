//! Property tests: the decoder, the capture reader, the meter and the ring block parser never panic on arbitrary
//! bytes, and the reader agrees with itself however the stream is cut into chunks and with the records a
//! hand-written pcap encoder put in.

use proptest::prelude::*;

use crate::decode::{decode, DecodeConfig};
use crate::meter::{Core, MeterConfig};
use crate::reader::Reader;
use crate::ring::parse_block;

const LINKTYPES: [u32; 7] = [0, 1, 101, 113, 228, 229, 276];

pub(crate) fn dcfg() -> DecodeConfig {
    DecodeConfig {
        decap_gre: true,
        decap_vxlan: true,
        decap_gtp: true,
        vxlan_port: 4789,
        gtp_port: 2152,
    }
}

pub(crate) fn core() -> Core {
    let cfg = MeterConfig {
        idle_ns: 1_000_000_000,
        active_ns: 2_000_000_000,
        grace_ns: 500_000_000,
        tick_ns: 100_000_000,
        ooo_ns: 1_000_000,
        max_flows: 8,
        max_pending_ts: 4,
        max_pending_echo: 4,
        frag_max: 4,
        frag_timeout_ns: 1_000_000_000,
    };
    Core::new(cfg, dcfg(), vec![1, 2, 4, 8, 16], Box::new(|_, _, _| false))
}

/// Every frame of `buf` (fed whole, or in two chunks cut at `cut`) as (ts, lt, bytes, wire), and the error.
pub(crate) fn read_all(
    buf: &[u8],
    cut: Option<usize>,
) -> (Vec<(i64, u32, Vec<u8>, u64)>, Option<String>) {
    let mut rd = Reader::new(false);
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let chunks: Vec<&[u8]> = match cut {
        Some(c) => {
            let c = c.min(buf.len());
            vec![&buf[..c], &buf[c..]]
        }
        None => vec![buf],
    };
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        pending.extend_from_slice(chunk);
        let eof = i + 1 == n;
        rd.each_frame(&pending, eof, |ts, lt, frame, wire| {
            out.push((ts, lt, frame.to_vec(), wire))
        });
        let used = rd.consumed();
        pending.drain(..used);
    }
    (out, rd.error.map(|e| e.reason))
}

fn pcap_file(snaplen: u32, records: &[(u32, u32, Vec<u8>, u32)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&0i32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&snaplen.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for (sec, usec, data, wire) in records {
        b.extend_from_slice(&sec.to_le_bytes());
        b.extend_from_slice(&usec.to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&wire.to_le_bytes());
        b.extend_from_slice(data);
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: crate::fuzz::cases(512), ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), lt_i in 0usize..7) {
        let _ = decode(1, LINKTYPES[lt_i], &data, &dcfg());
    }

    #[test]
    fn meter_never_panics(frames in proptest::collection::vec(
        (proptest::collection::vec(any::<u8>(), 0..120), 0usize..7, 0i64..5_000_000_000), 0..40)) {
        let mut c = core();
        for (data, lt_i, ts) in &frames {
            c.feed(*ts, LINKTYPES[*lt_i], data, data.len() as u64);
        }
        c.advance(10_000_000_000);
        c.flush();
        prop_assert_eq!(c.active(), 0);
    }

    #[test]
    fn reader_never_panics_and_chunking_changes_nothing(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        magic in 0usize..4,
        cut in 0usize..400,
    ) {
        // Arbitrary bytes behind each known magic number, so the parsers past the header get exercised.
        let magics: [[u8; 4]; 4] = [
            0xA1B2_C3D4u32.to_le_bytes(), 0xA1B2_3C4Du32.to_be_bytes(),
            0x0A0D_0D0Au32.to_le_bytes(), [0, 0, 0, 0],
        ];
        let mut buf = magics[magic].to_vec();
        buf.extend_from_slice(&data);
        let whole = read_all(&buf, None);
        let chunked = read_all(&buf, Some(cut));
        prop_assert_eq!(whole.0, chunked.0);
    }

    #[test]
    fn reader_returns_what_a_pcap_writer_put_in(
        records in proptest::collection::vec(
            (0u32..2_000_000_000, 0u32..1_000_000, proptest::collection::vec(any::<u8>(), 0..300), 0u32..2000),
            0..20),
        snaplen in 0u32..400,
    ) {
        // Records longer than the snap length are read whole (as tshark reads them).
        let (frames, err) = read_all(&pcap_file(snaplen, &records), None);
        prop_assert!(err.is_none(), "{:?}", err);
        let want: Vec<_> = records.iter().map(|(s, u, d, w)| {
            (*s as i64 * 1_000_000_000 + *u as i64 * 1000, 1u32, d.clone(), (*w as u64).max(d.len() as u64))
        }).collect();
        prop_assert_eq!(frames, want);
    }

    #[test]
    fn ring_blocks_never_panic_and_frames_stay_inside(block in proptest::collection::vec(any::<u8>(), 0..600)) {
        let base = block.as_ptr() as usize;
        let (n, _bad) = parse_block(&block, |f| {
            let at = f.data.as_ptr() as usize;
            assert!(f.data.is_empty() || (at >= base && at + f.data.len() <= base + block.len()));
        });
        prop_assert!(n as usize <= block.len());
    }

    #[test]
    fn ring_block_with_arbitrary_header_fields(
        words in proptest::collection::vec(any::<u32>(), 6),
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        // Plausible descriptor (num_pkts, first offset, length) with arbitrary values, then arbitrary frames.
        let mut b = vec![0u8; 48];
        for (i, w) in words.iter().enumerate() {
            let at = 8 + 4 * (i % 4);
            b[at..at + 4].copy_from_slice(&(w % 512).to_ne_bytes());
        }
        b.extend_from_slice(&tail);
        let _ = parse_block(&b, |_| {});
    }
}
