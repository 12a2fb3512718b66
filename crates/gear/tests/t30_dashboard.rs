//! The dashboard in a real headless Chromium, driven over WebDriver (chromedriver), against
//! wordcount running on `gear local -services` with REST authentication on: the page asks for
//! a login; logged in as a user, the DAG shows two processors, the receive throughput becomes
//! non-zero, and killing an application someone else submitted is refused on the page; logged
//! in as an admin, the kill shows it terminated. Then, over REST with HTTP Basic, the user
//! submits a binary (recorded as hers; it proves the cluster secret the services hand it) and
//! kills it. Screenshots go to `target/dashboard-*.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).

mod common;

use common::{Proc, free_port, wait_until};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One HTTP request to 127.0.0.1:`port`; the status and body. (chromedriver keeps connections
/// open, so this needs a real client that reads by content length.)
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String), ureq::Error> {
    http_as(port, method, path, body, None)
}

/// [`http`] with an `Authorization` header.
fn http_as(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    authorization: Option<&str>,
) -> Result<(u16, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A browser that never answers fails the test instead of hanging it.
        .timeout_global(Some(std::time::Duration::from_secs(120)))
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}{path}");
    let auth = authorization.unwrap_or("");
    let mut resp = match (method, body, authorization.is_some()) {
        ("POST", Some(b), _) => agent.post(&url).send_json(b)?,
        ("POST", None, _) => agent.post(&url).send_empty()?,
        ("DELETE", _, true) => agent.delete(&url).header("authorization", auth).call()?,
        ("DELETE", _, false) => agent.delete(&url).call()?,
        (_, _, true) => agent.get(&url).header("authorization", auth).call()?,
        _ => agent.get(&url).call()?,
    };
    let status = resp.status().as_u16();
    let text = resp.body_mut().with_config().limit(64 << 20).read_to_string()?;
    Ok((status, text))
}

/// A WebDriver session on chromedriver.
struct Browser {
    port: u16,
    session: String,
    _driver: Proc,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let port = free_port();
        let driver = Proc(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (Debian's chromium-driver) must be installed"),
        );
        wait_until("chromedriver answers", || http(port, "GET", "/status", None).is_ok_and(|(s, _)| s == 200));
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let (status, body) = http(port, "POST", "/session", Some(&caps)).unwrap();
        assert_eq!(status, 200, "starting a session: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Browser { port, session, _driver: driver }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, text) = http(self.port, method, &format!("/session/{}{path}", self.session), body).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{method} {path}: {text}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({"url": url})));
    }

    /// Runs JavaScript in the page; its result.
    fn js(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(&json!({"script": script, "args": []})))
    }

    fn screenshot(&self, name: &str) {
        use std::io::Write as _;
        let b64 = self.cmd("GET", "/screenshot", None);
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.as_str().unwrap()).unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target");
        let path = dir.join(format!("dashboard-{name}.png"));
        std::fs::File::create(&path).unwrap().write_all(&bytes).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(self.port, "DELETE", &format!("/session/{}", self.session), None);
    }
}

/// `gear passwd` for `password`: its hash.
fn password_hash(password: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gear"))
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$") && !hash.contains(password), "{hash}");
    hash
}

/// Logs in on the page's form as `user`.
fn log_in(browser: &Browser, user: &str, password: &str) {
    wait_until("the login form", || browser.js("return !!document.getElementById('login-form')") == json!(true));
    let (u, p) = (json!(user), json!(password));
    browser.js(&format!(
        "document.getElementById('login-user').value = {u}; \
         document.getElementById('login-password').value = {p}; \
         document.querySelector('#login-form button').click(); return null"
    ));
    wait_until("the header names who logged in", || {
        browser
            .js("const w = document.getElementById('who-name'); return w ? w.textContent : ''")
            .as_str()
            .is_some_and(|w| w.starts_with(user))
    });
}

#[test]
fn the_dashboard_shows_wordcount_live_and_kills_it() {
    let http_port = free_port();
    let (alice, boss) = (password_hash("alice's password"), password_hash("the boss's password"));
    let (dir, conf, _) = common::cluster_dir(
        "dashboard",
        &format!(
            "gearpump.services.http = {http_port}\ngearpump.metrics.enabled = true\ngearpump.metrics.reporter = \"akka\"\n\
             gearpump.ui-security.authentication-enabled = true\n\
             gearpump.ui-security.users {{ alice = \"{alice}\" }}\n\
             gearpump.ui-security.admins {{ boss = \"{boss}\" }}\n"
        ),
    );
    let _local = common::gear_local(&dir, &conf, &["-services", "-workernum", "2"]);
    // HTTP Basic as `curl -u boss:…` sends it.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "boss:the boss's password")
    );
    wait_until("the REST API answers", || {
        http_as(http_port, "GET", "/api/v1.0/workers", None, Some(&basic)).is_ok_and(|(s, b)| {
            s == 200 && serde_json::from_str::<Value>(&b).is_ok_and(|v| v.as_array().is_some_and(|a| a.len() == 2))
        })
    });
    assert_eq!(http(http_port, "GET", "/api/v1.0/workers", None).unwrap().0, 401, "nothing without a login");
    let out = common::submit_wordcount(&dir, &conf);
    assert!(out.status.success(), "gear app: {}", String::from_utf8_lossy(&out.stderr));

    let browser = Browser::start(&dir.join("chromium-profile"));
    let base = format!("http://127.0.0.1:{http_port}/");
    browser.go(&format!("{base}#/apps"));
    log_in(&browser, "alice", "alice's password");
    wait_until("the applications table lists wordcount", || {
        browser.js("return document.querySelectorAll('#apps tr[data-app-id]').length") == json!(1)
    });
    browser.go(&format!("{base}#/app/1"));
    wait_until("the DAG shows two processors", || {
        browser.js("return document.querySelectorAll('.dag g.node').length") == json!(2)
    });
    wait_until("the receive throughput shown becomes non-zero", || {
        let shown =
            browser.js("const e = document.getElementById('receive-throughput'); return e ? e.textContent : ''");
        shown.as_str().and_then(|s| s.replace(',', "").parse::<f64>().ok()).is_some_and(|v| v > 0.0)
    });
    browser.screenshot("app");
    browser.go(&format!("{base}#/"));
    wait_until("the cluster page lists the workers", || {
        browser.js("return document.querySelectorAll('#workers tr[data-worker-id]').length") == json!(2)
    });
    browser.screenshot("cluster");

    browser.go(&format!("{base}#/apps"));
    // Alice did not submit wordcount (`gear app` did, as this machine's user): refused.
    wait_until("the kill button", || browser.js("return document.querySelectorAll('button.kill').length") == json!(1));
    browser.js("document.querySelector('button.kill').click(); return null");
    wait_until("the page says why the kill was refused", || {
        browser
            .js("return document.getElementById('action-result').textContent")
            .as_str()
            .is_some_and(|t| t.contains("may manage only their own applications"))
    });
    browser.screenshot("refused");
    assert_eq!(
        browser.js("return document.querySelector('#apps tr[data-app-id=\"1\"] .status').textContent"),
        json!("active")
    );
    // The admin may.
    browser.js("document.getElementById('logout').click(); return null");
    log_in(&browser, "boss", "the boss's password");
    // The DAG view's processor menu: it offers the binary's task types to replace Sum by, and
    // changes Sum's parallelism; a parallelism of 0 is refused on the page with the reason.
    browser.go(&format!("{base}#/app/1"));
    wait_until("Sum's menu", || browser.js("return document.querySelectorAll('.node .menu').length") == json!(2));
    browser.js("document.querySelector('.node[data-processor=\"1\"] .menu').dispatchEvent(new MouseEvent('click', {bubbles: true})); return null");
    wait_until("the editor", || browser.js("return document.getElementById('editor').hidden") == json!(false));
    let types =
        browser.js("return [...document.querySelectorAll('#replace-form option')].map((o) => o.value).join(' ')");
    assert_eq!(
        types,
        json!("gearpump_examples::wordcount::Split gearpump_examples::wordcount::Sum"),
        "the replace menu offers the binary's task types"
    );
    browser.js("const f = document.getElementById('rescale-form'); f.parallelism.min = '0'; f.parallelism.value = '0'; f.requestSubmit(); return null");
    wait_until("the refusal", || {
        browser
            .js("return document.getElementById('editor-result').textContent")
            .as_str()
            .is_some_and(|t| t.contains("parallelism 0"))
    });
    browser.js(
        "const f = document.getElementById('rescale-form'); f.parallelism.value = '3'; f.requestSubmit(); return null",
    );
    wait_until("the change is made", || {
        browser
            .js("return document.getElementById('editor-result').textContent")
            .as_str()
            .is_some_and(|t| t.contains("version 1"))
    });
    wait_until("the DAG shows Sum with three tasks", || {
        browser
            .js("return [...document.querySelectorAll('.dag g.node text')].map((t) => t.textContent).join(' ')")
            .as_str()
            .is_some_and(|t| t.contains("Sum ×3"))
    });
    browser.js("document.querySelector('.dag').scrollIntoView(); return null");
    browser.screenshot("dag-changed");
    browser.js("document.getElementById('editor-close').click(); return null");
    wait_until("the processors table shows the old Sum retired with its death time", || {
        browser.js("const r = document.querySelector('#processors tr[data-processor=\"1\"]'); return r ? r.className + ' ' + r.cells[5].textContent : ''")
            .as_str()
            .is_some_and(|t| t.starts_with("retired") && !t.contains('—'))
    });
    browser.js("document.getElementById('processors').scrollIntoView(); return null");
    browser.screenshot("processors");
    // The AppMaster's log, read on its worker, from the link on the application's page.
    browser.js("window.scrollTo(0, 0); document.getElementById('appmaster-log').click(); return null");
    wait_until("the AppMaster's log", || {
        browser
            .js("const l = document.getElementById('log'); return l ? l.textContent : ''")
            .as_str()
            .is_some_and(|t| t.contains("Application active") && t.contains("Changing the DAG"))
    });
    browser.screenshot("appmaster-log");
    let (status, body) = http_as(http_port, "GET", "/api/v1.0/appmaster/1/logs/99", None, Some(&basic)).unwrap();
    assert!(status == 400 && body.contains("has no executor 99"), "{status} {body}");
    let (_, detail) = http_as(http_port, "GET", "/api/v1.0/appmaster/1?detail=true", None, Some(&basic)).unwrap();
    let executor = serde_json::from_str::<Value>(&detail).unwrap()["executors"][0]["executorId"].clone();
    let uri = format!("/api/v1.0/appmaster/1/logs/{executor}?bytes=100");
    let (status, body) = http_as(http_port, "GET", &uri, None, Some(&basic)).unwrap();
    let text = serde_json::from_str::<Value>(&body).unwrap()["text"].as_str().unwrap().len();
    assert!(status == 200 && text <= 100, "{status} {body}");
    browser.go(&format!("{base}#/apps"));
    wait_until("the kill button", || browser.js("return document.querySelectorAll('button.kill').length") == json!(1));
    browser.js("document.querySelector('button.kill').click(); return null");
    wait_until("the table shows the application terminated", || {
        browser.js(
            "const s = document.querySelector('#apps tr[data-app-id=\"1\"] .status'); return s ? s.textContent : ''",
        ) == json!("terminated")
    });
    browser.screenshot("apps");

    // Over REST as alice (HTTP Basic): her submission is recorded as hers (the binary it runs
    // proves the cluster secret it was handed), and she may kill it.
    let alice_basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:alice's password")
    );
    let jar = std::fs::read(common::wordcount()).unwrap();
    let mut form = Vec::new();
    form.extend_from_slice(
        b"--XYZ\r\nContent-Disposition: form-data; name=\"jar\"; filename=\"wordcount\"\r\n\
          Content-Type: application/octet-stream\r\n\r\n",
    );
    form.extend_from_slice(&jar);
    form.extend_from_slice(
        b"\r\n--XYZ\r\nContent-Disposition: form-data; name=\"args\"\r\n\r\n-split 1 -sum 1\r\n--XYZ--\r\n",
    );
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent
        .post(&format!("http://127.0.0.1:{http_port}/api/v1.0/master/submitapp"))
        .header("authorization", &alice_basic)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .send(&form[..])
        .unwrap();
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["appId"].as_u64().unwrap();
    let (_, apps) = http_as(http_port, "GET", "/api/v1.0/master/applist", None, Some(&alice_basic)).unwrap();
    let apps: Value = serde_json::from_str(&apps).unwrap();
    let mine = apps["appMasters"].as_array().unwrap().iter().find(|a| a["appId"] == id).cloned().unwrap();
    assert_eq!(mine["user"], "alice", "{mine}");
    let (status, text) =
        http_as(http_port, "DELETE", &format!("/api/v1.0/appmaster/{id}"), None, Some(&alice_basic)).unwrap();
    assert_eq!(status, 200, "{text}");
}
