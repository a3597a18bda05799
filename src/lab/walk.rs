//! `exgate lab walk`: an Outlook-like client that performs the article's numbered steps
//! against a running lab, and the legacy path the article tells you to block.

use std::fmt;
use std::path::Path;

use super::{LabInfo, MFA_CODE, OUTLOOK_CLIENT_ID, Scenario, TENANT, USERS, current_signing_key};
use crate::client::{Client, HttpResponse};
use crate::policy::Deployment;
use crate::token::mint::entra_v1_claims;

/// One step of the walk: the article's number, what happens, what came back.
#[derive(Clone, Debug)]
pub struct Step {
    pub number: &'static str,
    pub title: String,
    pub outcome: String,
    pub ok: bool,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "PASS" } else { "FAIL" };
        write!(
            f,
            "{:>6}  {}\n        → {}  [{mark}]",
            self.number, self.title, self.outcome
        )
    }
}

fn step(
    number: &'static str,
    title: impl Into<String>,
    outcome: impl Into<String>,
    ok: bool,
) -> Step {
    Step {
        number,
        title: title.into(),
        outcome: outcome.into(),
        ok,
    }
}

fn param<'a>(challenge: &'a str, name: &str) -> Option<&'a str> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let len = challenge[start..].find('"')?;
    Some(&challenge[start..start + len])
}

fn json_field(res: &HttpResponse, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&res.body).ok()?;
    v.get(name)?.as_str().map(str::to_owned)
}

async fn received_count(client: &Client, info: &LabInfo) -> anyhow::Result<usize> {
    let res = client
        .request("GET", &format!("{}/_lab/received", info.exchange), &[], "")
        .await?;
    let list: Vec<serde_json::Value> = serde_json::from_slice(&res.body)?;
    Ok(list.len())
}

/// EWS FindItem on the Inbox, as Outlook and EWS clients send it (MS-OXWSSRCH).
const FIND_INBOX: &str = r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header><t:RequestedServerVersion Version="Exchange2016"/></s:Header><s:Body><m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>Default</t:BaseShape></m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindItem></s:Body></s:Envelope>"#;

/// Walks the scenario of the lab described by `info` (its directory is `dir`).
pub async fn walk(info: &LabInfo, dir: &Path) -> anyhow::Result<Vec<Step>> {
    let scenario = info.scenario;
    // exgate and the identity provider serve TLS with certificates of the lab's CA.
    let client = Client::trusting(&dir.join(super::pki::CA_FILE))?;
    let pilot = &USERS[0];
    let mut steps = Vec::new();
    let autodiscover = format!("{}/autodiscover/autodiscover.xml", info.proxy);
    let pox = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>{}</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"#,
        pilot.upn
    );

    // 1–2: Outlook reaches Exchange; Exchange answers with the Azure AD endpoint.
    let (title, probe): (&str, &[(&str, &str)]) = match scenario.deployment() {
        Deployment::Online => (
            "Outlook tries to access Exchange Online (anonymous Autodiscover)",
            &[],
        ),
        Deployment::OnPremises => (
            "Outlook connects to Exchange and advertises modern authentication (empty Bearer)",
            &[("authorization", "Bearer")],
        ),
    };
    let mut headers = vec![("content-type", "text/xml")];
    headers.extend_from_slice(probe);
    let res = client
        .request("POST", &autodiscover, &headers, pox.clone())
        .await?;
    let challenge = res
        .header("www-authenticate")
        .unwrap_or_default()
        .to_owned();
    steps.push(step(
        "1",
        title,
        format!(
            "{} WWW-Authenticate: {}",
            res.status,
            truncate(&challenge, 60)
        ),
        res.status == 401 && challenge.starts_with("Bearer"),
    ));
    let authorize = param(&challenge, "authorization_uri")
        .unwrap_or_default()
        .to_owned();
    steps.push(step(
        "2",
        "Exchange provides the URL of the Azure AD endpoint to get a token from",
        format!("authorization_uri=\"{authorize}\""),
        authorize.starts_with(&info.idp),
    ));

    // 3: Outlook connects to Azure AD by using that URL.
    let res = client.request("GET", &authorize, &[], "").await?;
    steps.push(step(
        "3",
        "Outlook connects to Azure AD by using that URL",
        format!(
            "{} {}",
            res.status,
            if res.text().contains("Sign in") {
                "sign-in page"
            } else {
                "unexpected page"
            }
        ),
        res.status == 200,
    ));

    // 4–9: federated sign-in at AD FS, then MFA (by Conditional Access or by AD FS).
    let token_endpoint = format!("{}/common/oauth2/token", info.idp);
    let form = |mfa: Option<&str>| {
        let mut f = format!(
            "grant_type=password&client_id={OUTLOOK_CLIENT_ID}&resource={}&username={}&password={}",
            scenario.audience(),
            pilot.upn,
            pilot.password
        );
        if let Some(code) = mfa {
            f.push_str(&format!("&mfa_code={code}"));
        }
        f
    };
    let content_type = [("content-type", "application/x-www-form-urlencoded")];
    let res = client
        .request("POST", &token_endpoint, &content_type, form(None))
        .await?;
    let description = json_field(&res, "error_description").unwrap_or_default();
    let (number, title, expected) = if scenario.mfa_by_adfs() {
        (
            "4–6",
            "Azure AD redirects to AD FS; the user signs in; the AD FS access control policy demands MFA",
            "MSIS7068",
        )
    } else {
        (
            "4–8",
            "Azure AD redirects to AD FS; the user signs in; Conditional Access (desktop clients) demands MFA",
            "AADSTS50076",
        )
    };
    steps.push(step(
        number,
        title,
        format!("{} {}", res.status, truncate(&description, 70)),
        res.status == 400 && description.starts_with(expected),
    ));

    let res = client
        .request("POST", &token_endpoint, &content_type, form(Some(MFA_CODE)))
        .await?;
    let token = json_field(&res, "access_token").unwrap_or_default();
    let claims = super::token_claims(&token);
    let mfa_evidence = if scenario.mfa_by_adfs() {
        format!(
            "authnmethodsreferences={}",
            claims[crate::token::AUTHN_METHODS_REFERENCES]
        )
    } else {
        format!("amr={}", claims["amr"])
    };
    let (number, title) = if scenario.mfa_by_adfs() {
        (
            "7–9",
            "The user completes MFA at AD FS; Azure AD issues access and refresh tokens",
        )
    } else {
        (
            "9–10",
            "The user completes MFA; Azure AD issues access and refresh tokens",
        )
    };
    let outcome = match token.is_empty() {
        false => format!("{} token for {}, {mfa_evidence}", res.status, claims["aud"]),
        true => format!(
            "{} no token: {}",
            res.status,
            truncate(
                &json_field(&res, "error_description")
                    .or_else(|| json_field(&res, "error"))
                    .unwrap_or_else(|| "no error given".to_owned()),
                70
            )
        ),
    };
    steps.push(step(
        number,
        title,
        outcome,
        res.status == 200 && !token.is_empty(),
    ));

    // Last step: the client uses the token and gets the mailbox content.
    let bearer = format!("Bearer {token}");
    let ews = format!("{}/EWS/Exchange.asmx", info.proxy);
    let res = client
        .request(
            "POST",
            &ews,
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "text/xml"),
            ],
            FIND_INBOX,
        )
        .await?;
    let subjects = res.text().matches("<t:Subject>").count();
    let first = res
        .text()
        .split("<t:Subject>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_default()
        .to_owned();
    let number = if scenario.mfa_by_adfs() { "10" } else { "11" };
    steps.push(step(
        number,
        "With the access token, Outlook connects to Exchange and retrieves the mailbox",
        format!(
            "{} EWS FindItem: {subjects} messages, first \"{first}\"",
            res.status
        ),
        res.status == 200 && subjects == 3,
    ));
    let mapi = format!("{}/mapi/emsmdb/?MailboxId=6d2f3c1a@contoso.com", info.proxy);
    let res = client
        .request(
            "POST",
            &mapi,
            &[
                ("authorization", bearer.as_str()),
                ("x-requesttype", "Connect"),
            ],
            "",
        )
        .await?;
    // The article numbers the mailbox step 11 (Conditional Access) or 10 (AD FS).
    let number = if scenario.mfa_by_adfs() { "10b" } else { "11b" };
    steps.push(step(
        number,
        "…and MAPI over HTTP with the same token",
        format!(
            "{} X-ResponseCode: {}",
            res.status,
            res.header("x-responsecode").unwrap_or("-")
        ),
        res.status == 200,
    ));

    // The legacy path the authentication policy blocks (the article's red arrow).
    let before = received_count(&client, info).await?;
    let basic = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", pilot.upn, pilot.password))
        )
    };
    let res = client
        .request("POST", &mapi, &[("authorization", basic.as_str())], "")
        .await?;
    let after = received_count(&client, info).await?;
    let challenges: Vec<String> = res
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let (outcome, ok) = legacy_outcome(res.status, &challenges, after.saturating_sub(before));
    steps.push(step(
        "legacy",
        format!(
            "Legacy: Basic to MAPI as {} (pilot user, BlockLegacyOutlookAuth)",
            pilot.upn
        ),
        outcome,
        ok,
    ));

    // Defence in depth: a token without MFA, minted with the lab's own key.
    let key = current_signing_key(dir)?;
    let no_mfa = key.sign(&entra_v1_claims(
        TENANT,
        scenario.audience(),
        pilot.upn,
        false,
        600,
    ));
    let res = client
        .request(
            "POST",
            &mapi,
            &[("authorization", format!("Bearer {no_mfa}").as_str())],
            "",
        )
        .await?;
    let challenge = res.header("www-authenticate").unwrap_or_default();
    steps.push(step(
        "mfa",
        "A token issued without MFA (say, an exempted client) on MAPI",
        format!(
            "{} error=\"{}\"",
            res.status,
            param(challenge, "error").unwrap_or("-")
        ),
        // Conditional Access scenarios ask for the step-up (claims challenge); AD FS has
        // no authentication contexts (RFC 9470).
        res.status == 401
            && match info.scenario.mfa_by_adfs() {
                true => challenge.contains("insufficient_user_authentication"),
                false => challenge.contains("insufficient_claims") && challenge.contains("claims="),
            },
    ));
    Ok(steps)
}

/// The legacy step's outcome, said as it happened, and whether it passed: refused by
/// exgate (401) with the Bearer challenge only, and nothing forwarded to Exchange.
/// `forwarded` is how many requests reached the mock Exchange meanwhile.
fn legacy_outcome(status: u16, challenges: &[String], forwarded: usize) -> (String, bool) {
    let from = match forwarded {
        0 => "from exgate",
        _ => "from Exchange (exgate forwarded it)",
    };
    let only_bearer = !challenges.is_empty() && challenges.iter().all(|c| c.starts_with("Bearer"));
    let challenge = match (challenges.is_empty(), only_bearer) {
        (true, _) => "no challenge".to_owned(),
        (false, true) => "Bearer challenge only".to_owned(),
        (false, false) => {
            let schemes: Vec<&str> = challenges
                .iter()
                .map(|c| c.split([' ', ',']).next().unwrap_or_default())
                .collect();
            format!("challenges {}", schemes.join(", "))
        }
    };
    (
        format!("{status} {from}, {challenge}; Exchange received {forwarded} request(s)"),
        status == 401 && only_bearer && forwarded == 0,
    )
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// The scenario's header line for the walk's output.
pub fn heading(scenario: Scenario) -> String {
    format!("exgate lab walk — {scenario}: {}", scenario.title())
}

#[cfg(test)]
mod tests {
    use super::legacy_outcome;

    fn challenges(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn the_legacy_step_says_what_happened() {
        let bearer = challenges(&["Bearer client_id=\"x\""]);
        assert_eq!(
            legacy_outcome(401, &bearer, 0),
            (
                "401 from exgate, Bearer challenge only; Exchange received 0 request(s)".into(),
                true
            )
        );
        // The pilot policy removed: forwarded, and Exchange let the password in.
        let (text, ok) = legacy_outcome(200, &[], 1);
        assert!(!ok);
        assert_eq!(
            text,
            "200 from Exchange (exgate forwarded it), no challenge; Exchange received 1 request(s)"
        );
        // Forwarded and refused by Exchange: Exchange's own challenges.
        let (text, ok) = legacy_outcome(401, &challenges(&["Bearer a=\"b\",Basic Realm=\"\""]), 1);
        assert!(!ok);
        assert!(
            text.starts_with("401 from Exchange (exgate forwarded it)"),
            "{text}"
        );
        // Refused here, but with a legacy challenge left in.
        let (text, ok) = legacy_outcome(401, &challenges(&["Bearer a", "Basic realm=\"x\""]), 0);
        assert!(!ok);
        assert_eq!(
            text,
            "401 from exgate, challenges Bearer, Basic; Exchange received 0 request(s)"
        );
        // No challenge at all is not the pass either.
        assert!(!legacy_outcome(401, &[], 0).1);
    }
}
