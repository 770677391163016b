//! The dashboard at `/ui`: its auth (401 without the admin token, the sign-in cookie), and the
//! page itself in headless Chromium (Debian's `chromium`, driven by npm's `playwright-core`:
//! `host/ui/test/dashboard.mjs`), against a running pipeline: the graph with rising rates, the
//! tap, a poison event in the dead-letter table, a deploy through the upload, the redrive that
//! makes the poison event reach the sink, and a roll-back. Screenshots go to
//! `target/ui-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flowgate_tests::fixture::{Fixture, http, listen_addr, sigterm, wait_exit};
use flowgate_tests::plugins::{MARK_A, REJECT_BAD, UPPERCASE};

const TOKEN: &str = "ui-s3cret";

fn pipeline() -> String {
    format!(
        r#"
name = "example"
delivery = "exactly-once"
commit-interval = "100ms"

[http]
listen = "127.0.0.1:0"
admin-token-env = "UI_TOKEN"

[topics.clicks]
partitions = 2

[sources.api]
type = "http"
topic = "clicks"

# Rejects what starts with "bad": those go to the dead-letter topic.
[stages.check]
plugin = "{REJECT_BAD}"
input = "clicks"
output = "checked"

[stages.shout]
plugin = "{UPPERCASE}"
input = "checked"
output = "shouted"

[sinks.out]
type = "file"
input = "shouted"
path = "out.ndjson"
"#
    )
}

/// `flowgate run` of the pipeline with its admin token set: the fixture, the process and the
/// address it serves on.
fn start() -> (Fixture, Child, String) {
    let f = Fixture::new(&pipeline());
    let mut child = f
        .command(&["run", "--no-watch"])
        .env("UI_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(f.path("run-0.log")).unwrap())
        .spawn()
        .unwrap();
    let addr = listen_addr(&f, 0, &mut child);
    (f, child, addr)
}

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ui")
}

/// Node, the dashboard's npm packages and Chromium, or a failure naming how to install them.
fn browser_tools() -> PathBuf {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "no `node` on PATH: install Node.js 20 (apt-get install nodejs npm)"
    );
    assert!(
        ui_dir().join("node_modules/playwright-core").is_dir(),
        "the dashboard's npm packages are not installed: run `npm ci --prefix host/ui` (scripts/install-test-deps does)"
    );
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()));
    assert!(
        chromium.exists(),
        "no Chromium at {}: run `apt-get install chromium` (scripts/install-test-deps does)",
        chromium.display()
    );
    chromium
}

#[test]
fn the_dashboard_needs_the_admin_token_and_its_cookie_opens_the_admin_api() {
    let (_f, mut child, addr) = start();
    for path in ["/ui", "/ui/app.js", "/ui/app.css", "/admin/status"] {
        let (code, headers, body) = http(&addr, "GET", path, &[], b"");
        assert_eq!(code, 401, "GET {path} without the token: {body}");
        assert_eq!(
            headers.get("www-authenticate").map(String::as_str),
            Some("Bearer")
        );
    }
    let (_, _, form) = http(&addr, "GET", "/ui", &[], b"");
    assert!(
        form.contains("name=\"token\""),
        "the 401 page is the sign-in form: {form}"
    );
    let wrong = ("Cookie", "flowgate-admin=0000");
    let (code, _, _) = http(&addr, "GET", "/admin/status", &[wrong], b"");
    assert_eq!(code, 401, "a wrong cookie opens nothing");
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let (code, _, body) = http(&addr, "POST", "/ui/login", &[form], b"token=nope");
    assert!(
        code == 401 && body.contains("not the admin token"),
        "{code}: {body}"
    );

    let (code, headers, _) = http(
        &addr,
        "POST",
        "/ui/login",
        &[form],
        format!("token={TOKEN}").as_bytes(),
    );
    assert_eq!(code, 303);
    assert_eq!(headers.get("location").map(String::as_str), Some("/ui"));
    let cookie = headers.get("set-cookie").expect("a cookie").clone();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie does not hold the token itself: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let signed_in = ("Cookie", pair.as_str());
    let (code, headers, page) = http(&addr, "GET", "/ui", &[signed_in], b"");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("/ui/app.js"), "{page}");
    assert!(
        headers
            .get("content-security-policy")
            .is_some_and(|p| p.contains("default-src 'none'")),
        "{headers:?}"
    );
    let (code, _, js) = http(&addr, "GET", "/ui/app.js", &[signed_in], b"");
    assert!(code == 200 && js.len() > 10_000, "{code}");
    let (code, _, status) = http(&addr, "GET", "/admin/status", &[signed_in], b"");
    assert_eq!(code, 200, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["stages"][0]["outputs"][0], "checked", "{status}");
    assert_eq!(
        status["stages"][0]["dead_letter_topic"], "dead-letters",
        "{status}"
    );
    let bearer = format!("Bearer {TOKEN}");
    let (code, _, body) = http(
        &addr,
        "POST",
        "/admin/stages/check/rollback",
        &[("Authorization", &bearer)],
        b"",
    );
    assert!(
        code == 409 && body.contains("none to roll back to"),
        "a roll-back with one version only: {code} {body}"
    );
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(60)).expect("stops");
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the browser test's steps and figures (see them with --nocapture)"
)]
fn the_dashboard_in_chromium_shows_the_pipeline_taps_deploys_and_redrives() {
    let chromium = browser_tools();
    let (f, mut child, addr) = start();
    let shots = flowgate_tests::target_dir().join("ui-screenshots");
    let out = Command::new("node")
        .arg("test/dashboard.mjs")
        .current_dir(ui_dir())
        .env("FLOWGATE_URL", format!("http://{addr}"))
        .env("FLOWGATE_TOKEN", TOKEN)
        .env("FLOWGATE_FIX", MARK_A)
        .env("FLOWGATE_SINK", f.path("out.ndjson"))
        .env("FLOWGATE_SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{said}");
    assert!(
        out.status.success(),
        "the browser test failed ({}): {said}\nflowgate's log: {}",
        out.status,
        f.stderr(0)
    );
    assert!(child.try_wait().unwrap().is_none(), "{}", f.stderr(0));
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("stops after SIGTERM");
    assert!(status.success(), "{}", f.stderr(0));
    // Read back independently: the redriven poison event reached the sink once, through the
    // fixed plugin, counted as redriven once.
    let poison: Vec<_> = f
        .lines("out.ndjson")
        .into_iter()
        .filter(|l| l["value"].as_str().is_some_and(|v| v.contains("POISON")))
        .collect();
    assert_eq!(poison.len(), 1, "{poison:?}");
    assert_eq!(poison[0]["value"], "BAD-POISON-1|A");
    assert_eq!(poison[0]["headers"]["x-flowgate-redriven"], "1");
    for n in 1..=7 {
        let shot = std::fs::read_dir(&shots).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{n}-"))
        });
        assert!(shot, "screenshot {n} in {}", shots.display());
    }
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the bundle's size (see it with --nocapture)"
)]
fn the_embedded_bundle_is_the_build_of_its_sources() {
    browser_tools();
    let out = Command::new("node")
        .args(["build.mjs", "--check"])
        .current_dir(ui_dir())
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{said}");
    assert!(out.status.success(), "{said}");
}
