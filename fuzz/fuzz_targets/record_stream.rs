//! Logical capture's record stream: `decode_group` and `decode_stream` on arbitrary bytes never
//! panic, and what decodes re-encodes to the same bytes; a live set cut into groups decodes back
//! to itself. Also MessagePack Treasure times (`msgpack::modified_ns`) on arbitrary values.
#![no_main]

use hydrabackup::hyd::LiveSet;
use hydrabackup::logical::{msgpack, stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = msgpack::modified_ns(data);
    if let Ok(recs) = stream::decode_group(data, None) {
        let mut again = Vec::new();
        for r in &recs {
            stream::push_record(&mut again, r.key, r.value);
        }
        assert_eq!(again, data);
        let live: LiveSet = recs
            .iter()
            .map(|r| (r.key.to_vec(), r.value.to_vec()))
            .collect();
        let mut groups = Vec::new();
        stream::cut(1, &live, |g, _| groups.push(g));
        let back = stream::decode_stream(groups.iter().map(|g| &g[..])).expect("own stream");
        assert_eq!(back, live);
    }
});
