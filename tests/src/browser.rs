//! Headless Chromium (Debian's `chromium` and `chromium-driver`) through
//! WebDriver with fantoccini, for the UI tests of the hub: a chromedriver
//! on a free loopback port, a browser session with its own profile, and
//! the reads and clicks that survive the pages' in-place refresh.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::wait;

/// A chromedriver process on a free loopback port; killed when dropped.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (Debian package chromium-driver; ./scripts/test.sh installs it)");
        let driver = Self { child, port };
        wait::until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async move {
                reqwest::get(format!("http://127.0.0.1:{port}/status"))
                    .await
                    .map(drop)
                    .map_err(|_| "chromedriver did not start")
            },
        )
        .await;
        driver
    }

    /// A new browser session (1280×900) with `profile` as its user data
    /// directory: its own cookies.
    pub async fn browser(&self, profile: &tempfile::TempDir) -> Client {
        self.browser_sized(profile, 1280, 900).await
    }

    pub async fn browser_sized(
        &self,
        profile: &tempfile::TempDir,
        width: u32,
        height: u32,
    ) -> Client {
        let caps = json!({
            "goog:chromeOptions": {
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves a screenshot of the page as `dir/name.png`.
pub async fn screenshot(browser: &Client, dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).expect("screenshot dir");
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{}.png", name.to_lowercase())), png).expect("save screenshot");
}

/// The rendered text of every element matching `css`, read in one script
/// so a page refresh between finding and reading cannot leave a stale
/// element.
pub async fn texts(browser: &Client, css: &str) -> Vec<String> {
    let v = browser
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim())",
            vec![json!(css)],
        )
        .await
        .unwrap_or_else(|e| panic!("read {css}: {e}"));
    serde_json::from_value(v).expect("strings")
}

/// Finds and clicks what `locator` names, again if a page refresh made
/// the element stale between the two.
pub async fn click(browser: &Client, locator: Locator<'_>) {
    let mut tries = 0;
    loop {
        let clicked = match browser.find(locator).await {
            Ok(element) => element.click().await.map(drop),
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if tries < 5 && is_stale(&e) => tries += 1,
            Err(e) => panic!("click {locator:?}: {e}"),
        }
    }
}

fn is_stale(e: &fantoccini::error::CmdError) -> bool {
    matches!(e, fantoccini::error::CmdError::Standard(w)
        if w.error == fantoccini::error::ErrorStatus::StaleElementReference)
}

/// The text of the first element matching `css`.
pub async fn text(browser: &Client, css: &str) -> String {
    texts(browser, css)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {css}"))
}

pub async fn count(browser: &Client, css: &str) -> usize {
    browser
        .find_all(Locator::Css(css))
        .await
        .expect("find_all")
        .len()
}

/// The class attribute of the first element matching `css`.
pub async fn classes(browser: &Client, css: &str) -> String {
    let v = browser
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.className : null",
            vec![json!(css)],
        )
        .await
        .unwrap_or_else(|e| panic!("read {css}: {e}"));
    v.as_str().unwrap_or_else(|| panic!("no {css}")).to_owned()
}

/// Every resource the page loaded from another origin than `origin`
/// (`http://127.0.0.1:port`): a page of the hub must load nothing from
/// elsewhere (no CDN, works offline).
pub async fn foreign_requests(browser: &Client, origin: &str) -> Vec<String> {
    let v = browser
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)\
             .concat([location.href])",
            vec![],
        )
        .await
        .expect("read the page's requests");
    let urls: Vec<String> = serde_json::from_value(v).expect("strings");
    urls.into_iter()
        .filter(|u| !u.starts_with(origin))
        .collect()
}
