//! The Kerberos keytab stage on raw bytes. As an AP-REQ (what a client sends inside its
//! `Negotiate` token), read with a fixed keytab of AES256, AES128 and RC4 keys, the ones
//! the seeds' tickets are sealed with (`fuzz/examples/seeds.rs`): never panics, and the
//! cache answers exactly as a decryption does. As a keytab file: never panics. As the
//! plaintext of a ticket's `enc-part`, sealed with the service's AES256 key (what only a
//! KDC could send, but the decoder of `EncTicketPart` must not panic on it either):
//! never panics.
#![no_main]

use std::sync::{Arc, OnceLock};

use exgate::kerberos::build::{TicketSpec, ap_req_with, sealed_ticket};
use exgate::kerberos::keytab::{Keytab, Principal, build, etype};
use exgate::kerberos::ticket::read_client;
use exgate::kerberos::{Source, TicketReader};
use libfuzzer_sys::fuzz_target;

/// The keys `fuzz/examples/seeds.rs` seals its tickets with.
pub const AES256_KEY: [u8; 32] = [0x11; 32];
pub const AES128_KEY: [u8; 16] = [0x22; 16];
pub const RC4_KEY: [u8; 16] = [0x33; 16];
/// A time inside the seeds' tickets' lifetime.
const NOW: u64 = 1_800_000_000;

fn keytab() -> Arc<Keytab> {
    static KEYTAB: OnceLock<Arc<Keytab>> = OnceLock::new();
    KEYTAB
        .get_or_init(|| {
            let service = service();
            let bytes = build(&[
                (&service, 3, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY),
                (&service, 3, etype::AES128_CTS_HMAC_SHA1_96, &AES128_KEY),
                (&service, 3, etype::RC4_HMAC, &RC4_KEY),
            ]);
            Arc::new(Keytab::parse(&bytes).expect("the fixed keytab parses"))
        })
        .clone()
}

fn service() -> Principal {
    Principal {
        components: vec!["HTTP".into(), "mail.contoso.com".into()],
        realm: "CONTOSO.COM".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = Keytab::parse(data);
    let (service, client) = (service(), service());
    let spec = TicketSpec {
        client: &client,
        service: &service,
        kvno: 3,
        etype: etype::AES256_CTS_HMAC_SHA1_96,
        key: &AES256_KEY,
        endtime: NOW,
        authorization_bytes: 0,
    };
    let _ = read_client(&keytab(), &ap_req_with(&spec, &sealed_ticket(&spec, data)));
    let direct = read_client(&keytab(), data);
    let reader = TicketReader::new(keytab(), 4);
    let first = reader.read(data, NOW);
    let again = reader.read(data, NOW);
    let principal = |r: &Result<_, _>| match r {
        Ok((c, _)) => Ok(std::sync::Arc::clone(c)),
        Err(e) => Err(*e),
    };
    match (&direct, principal(&first), principal(&again)) {
        (Ok(d), Ok(f), Ok(a)) => {
            assert_eq!(*d, *f);
            assert_eq!(*d, *a);
            assert_eq!(first.as_ref().unwrap().1, Source::Decrypted);
            if d.endtime > NOW {
                assert_eq!(again.as_ref().unwrap().1, Source::Cached);
            }
        }
        (Err(_), Err(_), Err(_)) => {}
        // The reader refuses what it cannot locate a ticket in before decrypting.
        (Ok(_), Err(_), Err(_)) => {}
        other => panic!("the cache disagrees with a decryption: {other:?}"),
    }
});
