//! The lab console and the HTML report in a real browser: Debian's Chromium driven by
//! Playwright for Python (tests/clients/console_browser.py, which lists what it asserts).
//! Needs what `.ci/run` installs (the `chromium` package, the clients venv with
//! `playwright`), so it is `#[ignore]`d here and run by `.ci/run`. The screenshots it
//! takes land in `target/screenshots/` (or `EXGATE_SCREENSHOTS`); the README shows copies
//! of them from `docs/img/`.

use std::process::Command;

use crate::lab::LabProcess;
use crate::support::*;

#[test]
#[ignore = "needs Chromium and the Python clients venv with Playwright; .ci/run runs it"]
fn the_console_and_the_report_in_chromium() {
    let python = std::env::var("EXGATE_CLIENTS_PYTHON").expect(
        "EXGATE_CLIENTS_PYTHON: the venv python with tests/clients/requirements.txt (.ci/run makes it)",
    );
    let out_dir = std::env::var_os("EXGATE_SCREENSHOTS")
        .map_or_else(|| repo().join("target/screenshots"), Into::into);
    for scenario in ["online-ca", "onprem-adfs"] {
        let dir = scratch();
        let lab = LabProcess::start(scenario, &dir);
        let out = Command::new(&python)
            .arg(repo().join("tests/clients/console_browser.py"))
            .args([
                "--dir",
                arg(&dir),
                "--exgate",
                env!("CARGO_BIN_EXE_exgate"),
                "--out",
            ])
            .arg(out_dir.join(scenario))
            .env("REQUESTS_CA_BUNDLE", dir.join("ca.pem"))
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        print!("{stdout}");
        assert!(
            out.status.success(),
            "{scenario}: {stdout}\n{}",
            text(&out.stderr)
        );
        let checks = stdout
            .lines()
            .filter(|l| l.contains(r#""ok": true"#))
            .count();
        assert!(checks >= 15, "{scenario}: only {checks} checks ran");
        lab.stop();
    }
}
