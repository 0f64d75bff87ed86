//! The shared-data decoders (the pool snapshot and the published member list): garbage is an
//! error; what decodes re-encodes identically.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scheduler_core::membership::{Membership, MEMBERSHIP_MAGIC};
use scheduler_core::snapshot::PoolSnapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = PoolSnapshot::decode(data) {
        let again = PoolSnapshot::decode(&s.encode()).expect("an encoded snapshot decodes");
        assert_eq!(again.endpoints.len(), s.endpoints.len());
    }
    let mut with_magic = scheduler_core::snapshot::MAGIC.to_vec();
    with_magic.extend_from_slice(data);
    let _ = PoolSnapshot::decode(&with_magic);

    let mut members = MEMBERSHIP_MAGIC.to_vec();
    members.extend_from_slice(data);
    for bytes in [data, members.as_slice()] {
        if let Ok(m) = Membership::decode(bytes) {
            assert_eq!(Membership::decode(&m.encode()).as_ref(), Ok(&m));
        }
    }
});
