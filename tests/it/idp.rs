//! The lab's identity provider as MSAL and exgate see it, over the lab's TLS: Entra's v1
//! and v2.0 discovery, the password grant with and without the second factor, the
//! id_token and client_info an MSAL cache is built from, refresh tokens tied to their
//! user and client, and the claims challenge answered with `acrs`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use exgate::client::{Client, HttpResponse};
use exgate::lab::{MFA_CODE, Scenario, TENANT};

use crate::lab::in_process;

const CLIENT: &str = "d3590ed6-52b3-4102-aeff-aad2292ab01c";
const SCOPE: &str =
    "https://outlook.office365.com/EWS.AccessAsUser.All openid profile offline_access";

/// `application/x-www-form-urlencoded` (every byte but unreserved ones escaped).
fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn post(client: &Client, url: &str, fields: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let res = client
        .request(
            "POST",
            url,
            &[("content-type", "application/x-www-form-urlencoded")],
            form(fields),
        )
        .await
        .unwrap();
    (res.status, json(&res))
}

fn json(res: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&res.body).unwrap_or_else(|_| panic!("{}", res.text()))
}

/// A JWT's payload, unverified (what MSAL reads of an id_token).
fn payload(jwt: &serde_json::Value) -> serde_json::Value {
    let part = jwt.as_str().unwrap().split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_entras_v1_and_v2_for_common_and_the_tenant() {
    let (lab, client) = in_process(Scenario::OnlineCa).await;
    let idp = &lab.info.idp;
    for (path, issuer, token) in [
        (
            "common/.well-known/openid-configuration",
            "https://sts.windows.net/{tenantid}/".to_owned(),
            format!("{idp}/common/oauth2/token"),
        ),
        (
            "common/v2.0/.well-known/openid-configuration",
            "https://login.microsoftonline.com/{tenantid}/v2.0".to_owned(),
            format!("{idp}/common/oauth2/v2.0/token"),
        ),
        (
            &format!("{TENANT}/v2.0/.well-known/openid-configuration"),
            format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
            format!("{idp}/{TENANT}/oauth2/v2.0/token"),
        ),
        (
            "contoso.com/.well-known/openid-configuration",
            format!("https://sts.windows.net/{TENANT}/"),
            format!("{idp}/{TENANT}/oauth2/token"),
        ),
    ] {
        let res = client
            .request("GET", &format!("{idp}/{path}"), &[], "")
            .await
            .unwrap();
        assert_eq!(res.status, 200, "{path}");
        let doc = json(&res);
        assert_eq!(doc["issuer"], issuer.as_str(), "{path}");
        assert_eq!(doc["token_endpoint"], token.as_str(), "{path}");
        assert!(
            doc["jwks_uri"]
                .as_str()
                .unwrap()
                .starts_with("https://localhost:")
        );
        let keys = client
            .request("GET", doc["jwks_uri"].as_str().unwrap(), &[], "")
            .await
            .unwrap();
        assert!(json(&keys)["keys"][0]["kid"].is_string(), "{path}");
    }
    let res = client
        .request(
            "GET",
            &format!("{idp}/fabrikam.com/v2.0/.well-known/openid-configuration"),
            &[],
            "",
        )
        .await
        .unwrap();
    assert_eq!(res.status, 400);
    assert_eq!(json(&res)["error_codes"][0], 90002);
}

/// The v2.0 password grant as MSAL sends it: refused with Entra's AADSTS50076 shape
/// without the code; with it, an access token exgate accepts, a signed id_token for the
/// client (nonce echoed) and client_info naming the same object id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_grant_needs_the_code_and_answers_what_msal_caches() {
    let (lab, client) = in_process(Scenario::OnlineCa).await;
    let url = format!("{}/{TENANT}/oauth2/v2.0/token", lab.info.idp);
    let fields = [
        ("client_id", CLIENT),
        ("grant_type", "password"),
        ("username", "user01@contoso.com"),
        ("password", "Pilot-Passw0rd-01"),
        ("scope", SCOPE),
        ("client_info", "1"),
        ("nonce", "n-0S6_WzA2Mj"),
    ];
    let (status, refused) = post(&client, &url, &fields).await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    assert_eq!(refused["suberror"], "basic_action", "{refused}");
    assert_eq!(refused["error_codes"], serde_json::json!([50076]));
    let claims: serde_json::Value =
        serde_json::from_str(refused["claims"].as_str().unwrap()).unwrap();
    assert!(claims["access_token"]["capolids"]["values"].is_array());

    let mut with_code = fields.to_vec();
    with_code.push(("mfa_code", MFA_CODE));
    let (status, answer) = post(&client, &url, &with_code).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(
        answer["scope"],
        "https://outlook.office365.com/EWS.AccessAsUser.All"
    );
    assert!(answer["refresh_token"].is_string());
    let access = payload(&answer["access_token"]);
    assert_eq!(access["aud"], "https://outlook.office365.com");
    assert_eq!(access["amr"], serde_json::json!(["pwd", "mfa"]));
    assert_eq!(access["scp"], "EWS.AccessAsUser.All");

    // The id_token verifies against the published key.
    let key = exgate::lab::current_signing_key(lab.info.ca.parent().unwrap()).unwrap();
    let decoding = jsonwebtoken::DecodingKey::from_jwk(key.jwk()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[CLIENT]);
    validation.set_issuer(&[format!("https://login.microsoftonline.com/{TENANT}/v2.0")]);
    let id = jsonwebtoken::decode::<serde_json::Value>(
        answer["id_token"].as_str().unwrap(),
        &decoding,
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["preferred_username"], "user01@contoso.com");
    assert_eq!(id["tid"], TENANT);
    assert_eq!(id["oid"], access["oid"]);
    let info: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(answer["client_info"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(info, serde_json::json!({"uid": id["oid"], "utid": TENANT}));

    // exgate, validating against the identity provider's https discovery, lets it in.
    let bearer = format!("Bearer {}", answer["access_token"].as_str().unwrap());
    let res = client
        .request(
            "POST",
            &format!("{}/mapi/emsmdb/", lab.info.proxy),
            &[("authorization", &bearer), ("x-requesttype", "Connect")],
            "",
        )
        .await
        .unwrap();
    assert_eq!(res.status, 200);
}

/// Refresh tokens redeem for their own user and client only; a claims challenge on a
/// refresh is a step-up: refused without the code, and with it the token carries the
/// requested authentication context in `acrs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_are_tied_to_user_and_client_and_claims_step_up() {
    let (lab, client) = in_process(Scenario::OnpremCa).await;
    let url = format!("{}/common/oauth2/v2.0/token", lab.info.idp);
    let scope = "https://mail.contoso.com/.default offline_access";
    let (status, signed_in) = post(
        &client,
        &url,
        &[
            ("client_id", CLIENT),
            ("grant_type", "password"),
            ("username", "CONTOSO\\user02"),
            ("password", "Lab-Passw0rd-02"),
            ("scope", scope),
            ("mfa_code", MFA_CODE),
        ],
    )
    .await;
    assert_eq!(status, 200, "{signed_in}");
    let rt = signed_in["refresh_token"].as_str().unwrap();
    let refresh =
        |client_id: &'static str, rt: String, extra: Vec<(&'static str, &'static str)>| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let mut fields = vec![
                    ("client_id", client_id),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                    ("scope", scope),
                ];
                fields.extend(extra);
                post(&client, &url, &fields).await
            }
        };
    let (status, renewed) = refresh(CLIENT, rt.into(), vec![]).await;
    assert_eq!(status, 200, "{renewed}");
    let access = payload(&renewed["access_token"]);
    assert_eq!(access["upn"], "user02@contoso.com");
    // The lab console names whom the token was issued to, not a `username` the refresh
    // request chose (red team).
    let (status, _) = refresh(
        CLIENT,
        rt.into(),
        vec![("username", "someone.else@contoso.com")],
    )
    .await;
    assert_eq!(status, 200);
    let history = lab.bus.history();
    let shown = history
        .iter()
        .rev()
        .find(|e| e["source"] == "identity-provider")
        .unwrap();
    assert_eq!(shown["user"], "user02@contoso.com", "{shown}");
    assert_eq!(shown["step"], "9–10");
    assert!(
        shown["detail"].as_str().unwrap().contains("amr pwd,mfa"),
        "{shown}"
    );
    assert_eq!(access["aud"], "https://mail.contoso.com");
    assert_ne!(renewed["access_token"], signed_in["access_token"]);

    let (status, other) = refresh("11111111-2222-3333-4444-555555555555", rt.into(), vec![]).await;
    assert_eq!((status, &other["error_codes"][0]), (400, &70000.into()));
    let (status, unknown) = refresh(CLIENT, "lab-rt.forged".into(), vec![]).await;
    assert_eq!((status, &unknown["error"]), (400, &"invalid_grant".into()));

    let challenge = r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#;
    let (status, refused) = refresh(CLIENT, rt.into(), vec![("claims", challenge)]).await;
    assert_eq!((status, &refused["error_codes"][0]), (400, &50076.into()));
    let (status, stepped) = refresh(
        CLIENT,
        rt.into(),
        vec![("claims", challenge), ("mfa_code", MFA_CODE)],
    )
    .await;
    assert_eq!(status, 200, "{stepped}");
    assert_eq!(
        payload(&stepped["access_token"])["acrs"],
        serde_json::json!(["c1"])
    );
    let (status, bad) = refresh(CLIENT, rt.into(), vec![("claims", "{not json")]).await;
    assert_eq!((status, &bad["error_codes"][0]), (400, &50117.into()));
}

/// The v1 endpoint keeps working with `resource=` (the walk's Outlook), and gives a v1
/// id_token when `openid` is asked; AD FS scenarios refuse with MSIS7068 on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_endpoint_takes_resource_and_ad_fs_refuses_with_msis7068() {
    let (lab, client) = in_process(Scenario::OnlineAdfs).await;
    let fields = |mfa: bool| {
        let mut f = vec![
            ("client_id", CLIENT),
            ("grant_type", "password"),
            ("resource", "https://outlook.office365.com"),
            ("username", "user01@contoso.com"),
            ("password", "Pilot-Passw0rd-01"),
            ("scope", "openid"),
        ];
        if mfa {
            f.push(("mfa_code", MFA_CODE));
        }
        f
    };
    let v1 = format!("{}/common/oauth2/token", lab.info.idp);
    let (status, refused) = post(&client, &v1, &fields(false)).await;
    assert_eq!(status, 400);
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .starts_with("MSIS7068"),
        "{refused}"
    );
    let (status, answer) = post(&client, &v1, &fields(true)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["resource"], "https://outlook.office365.com");
    assert_eq!(answer["expires_in"], "3599");
    let access = payload(&answer["access_token"]);
    assert_eq!(access["amr"], serde_json::json!(["fed"]));
    let id = payload(&answer["id_token"]);
    assert_eq!(id["iss"], format!("https://sts.windows.net/{TENANT}/"));
    assert_eq!(id["upn"], "user01@contoso.com");
    assert_eq!(id["aud"], CLIENT);

    let v2 = format!("{}/common/oauth2/v2.0/token", lab.info.idp);
    let two_resources = [
        ("client_id", CLIENT),
        ("grant_type", "password"),
        ("username", "user01@contoso.com"),
        ("password", "Pilot-Passw0rd-01"),
        (
            "scope",
            "https://graph.microsoft.com/Mail.Read https://outlook.office365.com/EWS.AccessAsUser.All",
        ),
        ("mfa_code", MFA_CODE),
    ];
    let (status, several) = post(&client, &v2, &two_resources).await;
    assert_eq!((status, &several["error_codes"][0]), (400, &28000.into()));
}
