//! The shared-data snapshot decoder: garbage is an error; what decodes re-encodes identically.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scheduler_core::snapshot::PoolSnapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = PoolSnapshot::decode(data) {
        let again = PoolSnapshot::decode(&s.encode()).expect("an encoded snapshot decodes");
        assert_eq!(again.endpoints.len(), s.endpoints.len());
    }
    let mut with_magic = scheduler_core::snapshot::MAGIC.to_vec();
    with_magic.extend_from_slice(data);
    let _ = PoolSnapshot::decode(&with_magic);
});
