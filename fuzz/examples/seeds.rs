//! Writes the binary seeds of fuzz/corpus with exgate's own builders, the ones the unit
//! tests and the lab's clients use: NTLM Type 1 and Type 3 (Unicode and OEM, named and
//! anonymous), the Type 2 a client must never send, SPNEGO NegTokenInit/NegTokenResp
//! around them, and Kerberos. Run by `fuzz/seeds.sh`; the argument is fuzz/corpus.
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use exgate::auth::negotiate::{
    build_spnego_ap_req, build_spnego_init, build_spnego_kerberos, build_spnego_response,
};
use exgate::auth::ntlm::{AuthenticateParts, SIGNATURE, build_authenticate, build_negotiate};
use exgate::kerberos::build::{TicketSpec, ap_req, enc_ticket_part};
use exgate::kerberos::keytab::{self, Principal, etype};

fn write(corpus: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn type3(domain: &str, user: &str, unicode: bool, nt: &[u8]) -> Vec<u8> {
    build_authenticate(&AuthenticateParts {
        domain,
        user,
        workstation: "WS01",
        unicode,
        lm_response: &[0; 24],
        nt_response: nt,
        session_key: &[0x33; 16],
    })
}

fn main() {
    let corpus = std::env::args().nth(1).expect("usage: seeds <fuzz/corpus>");
    let corpus = Path::new(&corpus);
    let mut challenge = SIGNATURE.to_vec();
    challenge.extend_from_slice(&2u32.to_le_bytes());
    challenge.extend_from_slice(&[0; 36]);
    let ntlm = [
        ("type1", build_negotiate()),
        ("type2", challenge),
        (
            "type3-unicode",
            type3("CONTOSO", "user01", true, &[0x5a; 300]),
        ),
        ("type3-oem", type3("CONTOSO", "user02", false, &[0x5a; 24])),
        (
            "type3-upn",
            type3("", "user01@contoso.com", true, &[0x5a; 24]),
        ),
        ("type3-anonymous", type3("", "", true, &[])),
        ("type3-latin", type3("KÖLN", "jürgen", true, &[0x5a; 24])),
    ];
    for (name, msg) in &ntlm {
        write(corpus, "ntlm", name, msg);
        write(corpus, "spnego", &format!("raw-{name}"), msg);
        write(
            corpus,
            "authorization",
            &format!("ntlm-{name}"),
            format!("NTLM {}", STANDARD.encode(msg)).as_bytes(),
        );
    }
    let spnego = [
        ("init-type1", build_spnego_init(&build_negotiate())),
        ("resp-type3", build_spnego_response(&ntlm[2].1)),
        ("resp-type3-upn", build_spnego_response(&ntlm[4].1)),
        ("kerberos", build_spnego_kerberos(200)),
        // tests/it/attacks.rs: a bare NegTokenResp (accept-completed) and a raw Kerberos
        // GSS token.
        (
            "resp-accept-completed",
            STANDARD.decode("oQcwBaADCgEA").unwrap(),
        ),
        (
            "raw-kerberos",
            STANDARD
                .decode("YCgGCSqGSIb3EgECAgEAbgAAAAAAAAAAAAAAAAAAAAAAAAAA")
                .unwrap(),
        ),
    ];
    for (name, token) in &spnego {
        write(corpus, "spnego", name, token);
        write(
            corpus,
            "authorization",
            &format!("negotiate-{name}"),
            format!("Negotiate {}", STANDARD.encode(token)).as_bytes(),
        );
    }
    // Two headers, split at 0xff: refused as duplicates.
    let mut two = format!("NTLM {}", STANDARD.encode(build_negotiate())).into_bytes();
    two.push(0xff);
    two.extend_from_slice(b"Basic dXNlcjAxOnB3");
    write(corpus, "authorization", "duplicate", &two);
    kerberos(corpus);
}

/// AP-REQs sealed with the keys of `fuzz_targets/kerberos.rs` (AES256, AES128, RC4, a
/// PAC-sized one, an old key version, another service's), and the keytab itself.
fn kerberos(corpus: &Path) {
    let service = Principal {
        components: vec!["HTTP".into(), "mail.contoso.com".into()],
        realm: "CONTOSO.COM".into(),
    };
    let other = Principal {
        components: vec!["HTTP".into(), "other.contoso.com".into()],
        realm: "CONTOSO.COM".into(),
    };
    let client = Principal {
        components: vec!["user01".into()],
        realm: "CONTOSO.COM".into(),
    };
    let (aes256, aes128, rc4) = ([0x11u8; 32], [0x22u8; 16], [0x33u8; 16]);
    let base = TicketSpec {
        client: &client,
        service: &service,
        kvno: 3,
        etype: etype::AES256_CTS_HMAC_SHA1_96,
        key: &aes256,
        endtime: 1_800_036_000,
        authorization_bytes: 0,
    };
    let tickets = [
        ("aes256", base.clone()),
        (
            "aes128",
            TicketSpec {
                etype: etype::AES128_CTS_HMAC_SHA1_96,
                key: &aes128,
                ..base.clone()
            },
        ),
        (
            "rc4",
            TicketSpec {
                etype: etype::RC4_HMAC,
                key: &rc4,
                ..base.clone()
            },
        ),
        (
            "pac",
            TicketSpec {
                authorization_bytes: 1_200,
                ..base.clone()
            },
        ),
        (
            "old-kvno",
            TicketSpec {
                kvno: 2,
                ..base.clone()
            },
        ),
        (
            "other-service",
            TicketSpec {
                service: &other,
                key: &[0x44; 32],
                ..base.clone()
            },
        ),
    ];
    for (name, spec) in &tickets {
        let der = ap_req(spec);
        write(corpus, "kerberos", name, &der);
        write(
            corpus,
            "spnego",
            &format!("kerberos-{name}"),
            &build_spnego_ap_req(&der),
        );
    }
    let keytab = keytab::build(&[
        (&service, 3, etype::AES256_CTS_HMAC_SHA1_96, &aes256),
        (&service, 3, etype::RC4_HMAC, &rc4),
    ]);
    write(corpus, "kerberos", "keytab", &keytab);
    // The fuzz target also seals its input as a ticket's enc-part: give it real ones.
    for (name, spec) in &tickets {
        write(
            corpus,
            "kerberos",
            &format!("enc-part-{name}"),
            &enc_ticket_part(spec),
        );
    }
}
