//! The per-request pieces around the decision that `decide` and `token` do not cover:
//! request-header rewriting, legacy-challenge stripping, a verified-token cache hit, and
//! metric recording.
//!
//! Run: `cargo bench --bench hotpath`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use exgate::auth::Scheme;
use exgate::config::ChallengeConfig;
use exgate::metrics::Metrics;
use exgate::policy::{Action, Decision, Protocol, Reason};
use exgate::proxy::{
    append_forwarded, bearer_challenge, client_address, remove_hop_by_hop, strip_legacy_challenges,
};
use exgate::token::{Failed, FailedCache, TokenError, Verified, VerifiedCache};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

fn outlook_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "mail.contoso.com"),
        (
            "user-agent",
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
        ),
        ("content-type", "application/mapi-http"),
        ("x-requesttype", "Execute"),
        ("x-clientinfo", "{2F94A2BF-A2E6-4CCC-BF98-B5F22C542226}:42"),
        ("x-requestid", "{E2EA6C1C-E61B-49E9-9CFB-38184F907552}:123"),
        ("x-clientapplication", "Outlook/16.0.17928.20114"),
        ("content-length", "234"),
        ("accept", "*/*"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("hotpath");
    let headers = outlook_headers();
    let client = client_address("198.51.100.7".parse().unwrap());
    group.bench_function("request_header_rewrite", |b| {
        b.iter(|| {
            let mut h = headers.clone();
            remove_hop_by_hop(&mut h);
            append_forwarded(&mut h, black_box(&client), true);
            black_box(h)
        })
    });
    let bearer = bearer_challenge(&ChallengeConfig::default());
    let mut challenges = HeaderMap::new();
    for v in ["Negotiate", "NTLM", "Basic realm=\"mail.contoso.com\""] {
        challenges.append("www-authenticate", HeaderValue::from_static(v));
    }
    group.bench_function("strip_legacy_challenges", |b| {
        b.iter(|| {
            let mut h = challenges.clone();
            strip_legacy_challenges(&mut h, &bearer);
            black_box(h)
        })
    });
    let cache = VerifiedCache::new(10_000);
    let token = format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.{}",
        "p".repeat(1500),
        "s".repeat(342)
    );
    cache.insert(
        Arc::new(Verified::new(&token, 0, 1, u64::MAX, None, true)),
        0,
    );
    group.bench_function("verified_cache_hit_2k_token", |b| {
        b.iter(|| black_box(cache.get(black_box(&token), 1)))
    });
    // A repeated forged token: the SHA-256 of the whole token, then a lookup.
    let failed = FailedCache::new(10_000);
    let forged = Failed {
        issuer: 0,
        generation: 1,
        error: TokenError::BadSignature,
        expired_after: 0,
    };
    failed.insert(&token, exgate::cache::digest(token.as_bytes()), forged, 0);
    group.bench_function("failed_cache_hit_2k_token", |b| {
        b.iter(|| {
            let key = exgate::cache::digest(black_box(token.as_bytes()));
            black_box(failed.get(&key, 1))
        })
    });
    // A valid token asking the failed cache's filter, as the quick path does before it
    // leaves the token to validation: a pass over its signature, no digest.
    let valid = token.replace(&"s".repeat(342), &"v".repeat(342));
    group.bench_function("failed_filter_miss_2k_token", |b| {
        b.iter(|| black_box(failed.may_hold(black_box(valid.as_bytes()))))
    });
    let metrics = Metrics::new();
    let decision = Decision {
        action: Action::Block,
        reason: Reason::LegacyBlocked,
        protocol: Protocol::Mapi,
        scheme: Scheme::Basic,
        policy: None,
        legacy: true,
        user: None,
        connection: false,
    };
    group.bench_function("metrics_record_and_duration", |b| {
        b.iter(|| {
            metrics.record(black_box(&decision));
            metrics.record_duration(Protocol::Mapi, Action::Block, 0.0002);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
