//! The web console under test: the `vault-console` binary on a loopback port in front of a
//! daemon, a headless Chromium driven through chromedriver (WebDriver), and plain HTTP/1.1
//! requests for what an attacker's own client would send.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use secrecy::ExposeSecret;

use crate::daemon::{binary_path, free_port};

/// A running `vault-console`.
pub struct Console {
    child: Child,
    /// `http://localhost:PORT` (a name, not an address: browsers keep Secure cookies for
    /// `localhost` over plain HTTP, as for HTTPS).
    pub url: String,
    /// The port it serves on.
    pub port: u16,
}

impl Console {
    /// Starts the console in front of `daemon_endpoint`, with `extra` arguments.
    pub fn start(daemon_endpoint: &str, extra: &[&str]) -> Console {
        let port = free_port();
        let mut child = Command::new(binary_path("vault-console"))
            .args([
                "--daemon",
                daemon_endpoint,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vault-console");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("console banner");
        assert!(line.starts_with("vault-console listening on "), "{line}");
        Console {
            child,
            url: format!("http://localhost:{port}"),
            port,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (say "TERM") and waits for the console to exit.
    pub fn signal_and_wait(mut self, signal: &str) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        self.child.wait().expect("wait for the console")
    }

    /// What a console with these arguments says when it refuses to start.
    pub fn refusal(args: &[&str]) -> String {
        let output = Command::new(binary_path("vault-console"))
            .args(args)
            .output()
            .expect("run vault-console");
        assert!(!output.status.success(), "the console started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium with its own profile (its own cookies: another person's browser).
pub struct Browser {
    driver: Child,
    /// The WebDriver session.
    pub client: fantoccini::Client,
    /// Where its downloads land.
    pub downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a browser session.
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver (install chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("profile");
        let downloads = tempfile::tempdir().expect("downloads");
        // The flags the machine notes ask for: no background networking on a closed network.
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path().display().to_string(),
                    "download.prompt_for_download": false,
                },
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session");
        Browser {
            driver,
            client,
            downloads,
            _profile: profile,
        }
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("goto");
    }

    /// Signs in at `console` with `token`; returns the page's source after.
    pub async fn sign_in(&self, console: &Console, token: &secrecy::SecretString) -> String {
        self.open(&format!("{}/signin", console.url)).await;
        self.fill("token", token.expose_secret()).await;
        self.submit("signin").await;
        self.source().await
    }

    /// Types `text` into the form field with id `id` (a file input takes a path).
    pub async fn fill(&self, id: &str, text: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no field #{id}: {e}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into #{id}: {e}"));
    }

    /// Signs in on `console` by choosing the token file at `path` (nothing pasted); returns
    /// the page it leads to.
    pub async fn sign_in_with_file(&self, console: &Console, path: &std::path::Path) -> String {
        self.open(&format!("{}/signin", console.url)).await;
        self.fill("token-file", &path.display().to_string()).await;
        self.submit("signin").await;
        self.source().await
    }

    /// Clicks the submit button `id` and waits for the page it leads to (the old page's
    /// document gone stale).
    pub async fn submit(&self, id: &str) {
        let old = self.client.find(Locator::Css("html")).await.expect("page");
        self.click(id).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while old.tag_name().await.is_ok() {
            assert!(Instant::now() < deadline, "#{id} led nowhere");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element with id `id`.
    pub async fn click(&self, id: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click #{id}: {e}"));
    }

    /// The text of the element with id `id`.
    pub async fn text(&self, id: &str) -> String {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id}: {e}"))
            .text()
            .await
            .expect("text")
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.client.source().await.expect("source")
    }

    /// A file that finished downloading, whose name holds `part`, within 20 s.
    pub fn downloaded(&self, part: &str) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = std::fs::read_dir(self.downloads.path())
                .expect("downloads")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    // Chromium writes `NAME.crdownload` until the download is complete.
                    name.contains(part) && !name.ends_with(".crdownload")
                });
            if let Some(path) = found {
                return path;
            }
            assert!(Instant::now() < deadline, "no *{part}* was downloaded");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a screenshot of the page as `name`.png under `target/console-screenshots/`
    /// (the pictures in docs/OPERATIONS.md).
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/console-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("console-screenshots")
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// Every value of header `name`.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name` (empty if none).
    pub fn header(&self, name: &str) -> &str {
        self.header_values(name).first().copied().unwrap_or("")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request to the console, as any client (or attacker's script) sends it.
pub fn http(
    console: &Console,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", console.port)).expect("connect console");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        console.port,
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..end])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 4 + size..];
    }
}

/// A session made the way a browser makes one, over plain HTTP: the session cookie and the
/// form token of its pages.
pub struct HttpSession {
    /// `Cookie:` header value.
    pub cookie: String,
    /// The session's form token.
    pub csrf: String,
}

/// The value of `name="…" value="…"` in `html`.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// `name=value` of the first Set-Cookie for `name`.
pub fn set_cookie(answer: &Answer, name: &str) -> Option<String> {
    answer
        .header_values("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap_or("").to_owned())
}

/// Percent-encodes a form value.
pub fn form_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in over plain HTTP with `token`.
pub fn http_sign_in(console: &Console, token: &secrecy::SecretString) -> HttpSession {
    let form = http(console, "GET", "/signin", &[], "");
    let signin_cookie = set_cookie(&form, "__Host-mnl-signin").expect("sign-in cookie");
    let field = hidden_field(&form.text(), "signin").expect("sign-in field");
    let body = format!(
        "signin={}&token={}",
        form_value(&field),
        form_value(token.expose_secret())
    );
    let origin = format!("http://localhost:{}", console.port);
    let answer = http(
        console,
        "POST",
        "/signin",
        &[
            ("Cookie", &signin_cookie),
            ("Origin", &origin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &body,
    );
    assert_eq!(answer.status, 303, "{}", answer.text());
    let cookie = set_cookie(&answer, "__Host-mnl-console").expect("session cookie");
    let home = http(console, "GET", "/", &[("Cookie", &cookie)], "");
    let csrf = hidden_field(&home.text(), "csrf").expect("form token");
    HttpSession { cookie, csrf }
}
