//! RS256 bearer-token validation of an Entra-sized token (about 2 KB with groups):
//! uncached (a full verification every time) against cached (the same token again).
//!
//! Run: `cargo bench --bench token`
//! Last results: see the README's "Benchmarks" table.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use exgate::metrics::Metrics;
use exgate::policy::Protocol;
use exgate::token::TokenValidator;
use exgate::token::mint::{SigningKey, entra_v1_claims, jwks};
use exgate::token::{IssuerConfig, KeySource, TokensConfig};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AUDIENCE: &str = "https://outlook.office365.com";

fn validator(jwks_path: &std::path::Path, cache_max_entries: usize) -> TokenValidator {
    let config = TokensConfig {
        issuers: vec![IssuerConfig::new(
            "https://sts.windows.net/{tenantid}/",
            &[AUDIENCE],
            KeySource::JwksFile(jwks_path.to_owned()),
        )],
        require_mfa: [false; Protocol::ALL.len()],
        auth_context_ids: vec![],
        cache_max_entries,
    };
    TokenValidator::new(&config, Arc::new(Metrics::new())).unwrap()
}

/// An Entra v1 token with 20 group ids, about 2 KB.
fn entra_token(key: &SigningKey) -> String {
    let mut claims = entra_v1_claims(TENANT, AUDIENCE, "user00042@contoso.com", true, 3600);
    claims["groups"] = (0..20)
        .map(|i| format!("{i:08x}-1111-2222-3333-444455556666"))
        .collect::<Vec<_>>()
        .into();
    key.sign(&claims)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::generate("bench-key");
    let path = std::env::temp_dir().join(format!("exgate-bench-jwks-{}.json", std::process::id()));
    std::fs::write(&path, jwks(&[&key])).unwrap();
    let token = entra_token(&key);
    eprintln!("token length: {} bytes", token.len());

    let uncached = validator(&path, 0);
    let cached = validator(&path, 10_000);
    rt.block_on(async {
        uncached.refresh_all().await;
        cached.refresh_all().await;
        assert!(cached.validate(token.as_bytes()).await.is_ok());
        assert!(uncached.validate(token.as_bytes()).await.is_ok());
    });

    let mut group = c.benchmark_group("token");
    group.bench_function("rs256_uncached", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                uncached
                    .validate(black_box(token.as_bytes()))
                    .await
                    .unwrap(),
            )
        })
    });
    group.bench_function("rs256_cached", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(cached.validate(black_box(token.as_bytes())).await.unwrap())
        })
    });
    group.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
