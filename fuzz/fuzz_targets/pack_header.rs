//! Pack headers: `decode_header` on arbitrary plaintext, `split_pack`/`read_header` on arbitrary
//! pack bytes (which fail authentication), and `read_header` on packs whose header is arbitrary
//! plaintext sealed with the fixed key, so the checks after authentication run too.
#![no_main]

use std::sync::LazyLock;

use hydrabackup::crypto::{Keys, SealKey};
use hydrabackup::repo::pack::{decode_header, encode_header, read_header, split_pack};
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::new(SealKey::new(&[7; 32]), [9; 32]));

fn check_header(h: &[u8]) {
    if let Ok(entries) = decode_header(h) {
        // A header that decodes is canonical: it encodes back to the same bytes.
        assert_eq!(encode_header(&entries), h);
        let mut off = 0u64;
        for e in &entries {
            assert_eq!(e.offset as u64, off, "offsets are contiguous");
            off += e.len as u64;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_header(data);
    // The same bytes behind a valid magic and version, to get past the first check.
    let mut h = b"HBPK\x01".to_vec();
    h.extend_from_slice(data);
    check_header(&h);

    if let Ok((body, header)) = split_pack(data) {
        assert_eq!(body.len() + header.len() + 4, data.len());
    }
    let _ = read_header(&KEYS, data);

    // A pack whose sealed header holds the input: [body length u16][header plaintext after
    // the magic and version].
    let [a, b, rest @ ..] = data else { return };
    let mut pack = vec![0u8; u16::from_le_bytes([*a, *b]) as usize];
    let mut plain = b"HBPK\x01".to_vec();
    plain.extend_from_slice(rest);
    let sealed = KEYS.seal_key().seal(&plain);
    pack.extend_from_slice(&sealed);
    pack.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    if let Ok(entries) = read_header(&KEYS, &pack) {
        let body: u64 = entries.iter().map(|e| e.len as u64).sum();
        assert_eq!(body + sealed.len() as u64 + 4, pack.len() as u64);
        assert_eq!(entries, decode_header(&plain).expect("it decoded once"));
    }
});
