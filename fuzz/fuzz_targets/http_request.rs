//! The REST server's request reader on arbitrary bytes from the network: it must return a
//! request or an error, never panic or read past its limits.
#![no_main]

use std::io::{BufReader, Read};

use hydrabackup::server::http::{parse_range, read_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = BufReader::with_capacity(64, data);
    for _ in 0..4 {
        let Ok(req) = read_request(&mut r) else { return };
        let _ = req.header("authorization");
        if let Some(v) = req.header("range") {
            let _ = parse_range(v);
        }
        match req.content_length() {
            Ok(n) => {
                let mut body = Vec::new();
                let _ = r.by_ref().take(n.min(1 << 16)).read_to_end(&mut body);
            }
            Err(_) => return,
        }
    }
});
