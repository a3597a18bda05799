//! Real clients against the lab (onprem-ca: user01's policy blocks MAPI, not EWS). curl
//! runs in `cargo test`; Python's requests-ntlm, pyspnego and exchangelib need the venv
//! that `.ci/run` creates (`EXGATE_CLIENTS_PYTHON`), so those tests are `#[ignore]`d
//! here and run by `.ci/run`.

use std::path::Path;
use std::process::Command;

use crate::lab::LabProcess;
use crate::support::*;

const USER01: &str = "CONTOSO\\user01";
const PASSWORD01: &str = "Pilot-Passw0rd-01";

fn lab_info(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap()
}

/// What the mock Exchange received, as (method, path, user, status).
fn received(exchange: &str) -> Vec<(String, String, Option<String>, u16)> {
    let out = Command::new("curl")
        .args(["-s", &format!("{exchange}/_lab/received")])
        .output()
        .unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                r["user"].as_str().map(Into::into),
                r["status"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}

/// Exchange never served MAPI to an authenticated user.
fn assert_no_authenticated_mapi(exchange: &str) {
    let seen = received(exchange);
    let served: Vec<_> = seen
        .iter()
        .filter(|(_, path, user, _)| path.starts_with("/mapi") && user.is_some())
        .collect();
    assert!(
        served.is_empty(),
        "Exchange served MAPI: {served:?}\nall: {seen:?}"
    );
}

/// The first input: curl reuses its NTLM connection for the second URL.
#[test]
fn curl_ntlm_reusing_its_connection_is_still_refused_mapi() {
    let dir = scratch();
    let lab = LabProcess::start("onprem-ca", &dir);
    let info = lab_info(&dir);
    let proxy = info["proxy"].as_str().unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "--ntlm",
            "-u",
            &format!("{USER01}:{PASSWORD01}"),
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects}\n",
            &format!("{proxy}/EWS/Exchange.asmx"),
            &format!("{proxy}/mapi/emsmdb/"),
        ])
        .output()
        .unwrap();
    let lines: Vec<String> = text(&out.stdout).lines().map(Into::into).collect();
    assert_eq!(lines, ["200 1", "401 0"], "{}", text(&out.stderr));
    assert_no_authenticated_mapi(info["exchange"].as_str().unwrap());
    lab.stop();
}

fn python() -> String {
    std::env::var("EXGATE_CLIENTS_PYTHON")
        .expect("EXGATE_CLIENTS_PYTHON: the venv python with tests/clients/requirements.txt (.ci/run makes it)")
}

fn run_python(script: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(python())
        .arg(repo().join("tests/clients").join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn statuses(lines: &[serde_json::Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect()
}

/// requests-ntlm (NTLM) and pyspnego (NTLM inside SPNEGO) reuse one connection: EWS is
/// served, MAPI on the same connection is refused, and EWS works again afterwards.
#[test]
#[ignore = "needs the Python clients venv; .ci/run runs it"]
fn python_ntlm_and_negotiate_sessions_are_refused_mapi_on_their_connection() {
    let dir = scratch();
    let lab = LabProcess::start("onprem-ca", &dir);
    let info = lab_info(&dir);
    let proxy = info["proxy"].as_str().unwrap();
    for negotiate in [false, true] {
        let mut args = vec!["--base", proxy, "--user", USER01, "--password", PASSWORD01];
        if negotiate {
            args.push("--negotiate");
        }
        args.extend(["/EWS/Exchange.asmx", "/mapi/emsmdb/", "/EWS/Exchange.asmx"]);
        let lines = run_python("ntlm_session.py", &args);
        assert_eq!(
            statuses(&lines),
            [200, 401, 200],
            "negotiate={negotiate}: {lines:?}"
        );
        assert_eq!(lines[1]["connection_reused"], true, "{lines:?}");
    }
    assert_no_authenticated_mapi(info["exchange"].as_str().unwrap());
    lab.stop();
}

/// exchangelib with its default (fail-fast) retry policy: a blocked handshake is an
/// authentication failure at once, not "server busy" (no `Connection: close` on a 401).
#[test]
#[ignore = "needs the Python clients venv; .ci/run runs it"]
fn exchangelib_sees_a_blocked_handshake_as_unauthorized_not_busy() {
    let dir = scratch();
    let lab = LabProcess::start("onprem-ca", &dir);
    let info = lab_info(&dir);
    let server = info["proxy"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let args = [
        "--server",
        &server,
        "--user",
        USER01,
        "--password",
        PASSWORD01,
        "--fail-fast",
    ];
    let lines = run_python("exchangelib_blocked.py", &args);
    assert_eq!(lines[0]["outcome"], "ok", "{lines:?}");
    let out = exgate(&[
        "cmdlet",
        "--dir",
        arg(&dir),
        "Set-AuthenticationPolicy BlockLegacyOutlookAuth -BlockLegacyAuthWebServices",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = run_python("exchangelib_blocked.py", &args);
    assert_eq!(lines[0]["outcome"], "UnauthorizedError", "{lines:?}");
    assert!(lines[0]["seconds"].as_f64().unwrap() < 5.0, "{lines:?}");
    lab.stop();
}
