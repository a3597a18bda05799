//! Writes the binary seeds of fuzz/corpus with exgate's own builders, the ones the unit
//! tests and the lab's clients use: NTLM Type 1 and Type 3 (Unicode and OEM, named and
//! anonymous), the Type 2 a client must never send, SPNEGO NegTokenInit/NegTokenResp
//! around them, and Kerberos. Run by `fuzz/seeds.sh`; the argument is fuzz/corpus.
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use exgate::auth::negotiate::{build_spnego_init, build_spnego_kerberos, build_spnego_response};
use exgate::auth::ntlm::{AuthenticateParts, SIGNATURE, build_authenticate, build_negotiate};

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
}
