//! The dashboard in a real browser: `processor run --dashboard` replays the bundled
//! sample, headless Chromium opens the page (driven over the DevTools protocol), and the
//! page's DOM is checked while the run moves and after it ends: charts drawn, the sample's
//! keys listed, the figures equal to the run's summary, the events per key adding up to
//! the events aggregated. A screenshot is written to `target/tmp/dashboard.png`.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it): without it the test fails, saying how
//! to install it, unless `PROCESSOR_SKIP_BROWSER_TESTS=1` is set (the README names it).

#[path = "support/child.rs"]
mod child;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use child::{within, Proc};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The variable that lets a developer without a browser skip this test.
const SKIP: &str = "PROCESSOR_SKIP_BROWSER_TESTS";

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Waits for a line of the child's stderr that `pick` accepts.
fn wait_line<T>(child: &Proc, within: Duration, pick: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = child.stderr_text().lines().find_map(&pick) {
            return v;
        }
        if Instant::now() > deadline {
            child.fail(&format!(
                "no such line from the processor within {within:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP GET on loopback (the DevTools endpoint's list of pages); the body, read
/// by its length (the endpoint keeps the connection open).
fn http_get(port: u16, path: &str) -> String {
    let s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    )
    .expect("DevTools endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(&s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(s);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// The port Chromium's DevTools endpoint took (it writes it to its profile directory).
fn devtools_port(profile: &Path) -> u16 {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(port) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            return port;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("Chromium did not open its DevTools endpoint within 30 s");
}

/// A DevTools-protocol session with one page.
struct Page {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        within(
            Duration::from_secs(30),
            &format!("sending {method} to DevTools"),
            self.socket.send(Message::Text(request.into())),
        )
        .await
        .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(msg) = self.socket.next().await {
                let Ok(Message::Text(text)) = msg else {
                    continue;
                };
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["id"] == id {
                    return v;
                }
            }
            panic!("DevTools connection closed");
        })
        .await
        .unwrap_or_else(|_| panic!("{method}: no answer within 30 s"));
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Evaluates `expression` in the page; its value as JSON.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }
}

/// What the test reads of the page.
const READ_PAGE: &str = r##"(() => {
  const num = (id) => { const v = document.getElementById(id).dataset.value; return v === undefined || v === "" ? null : Number(v); };
  const keys = [...document.querySelectorAll("#keys li")];
  return {
    state: document.body.dataset.state,
    events: num("events"), late: num("late"), dead: num("dead"), rows: num("rows"), updates: num("updates"),
    watermark: num("watermark"),
    keys: keys.map((li) => li.dataset.key),
    key_events: keys.reduce((n, li) => n + Number(li.dataset.events || 0), 0),
    cards: document.querySelectorAll("#charts .card").length,
    canvases: document.querySelectorAll("#charts .card canvas").length,
    latest: document.querySelectorAll("#latest tbody tr").length,
    marked_updates: document.querySelectorAll("#latest tbody tr.update").length,
    uplot: typeof uPlot,
  };
})()"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_run_moving_and_its_totals_in_chromium() {
    let Some(chromium) = find_chromium() else {
        if std::env::var_os(SKIP).is_some_and(|v| v == "1") {
            eprintln!("skipped: {SKIP}=1 and no Chromium on PATH");
            return;
        }
        panic!(
            "no Chromium on PATH: install it (Debian: `apt-get install chromium`), or set {SKIP}=1 to skip this test"
        );
    };

    // The processor: the bundled sample's 20 minutes replayed in about 10 s (killed when
    // dropped, however the test ends).
    // In a folder of its own: the default config keeps checkpoints in `checkpoints/`.
    let workdir = tempfile::tempdir().unwrap();
    let mut processor = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_processor"))
            .current_dir(workdir.path())
            .args([
                "run",
                "--dashboard",
                "127.0.0.1:0",
                "--replay-rate",
                "120x",
                "--format",
                "json",
            ]),
    );
    let address = wait_line(&processor, Duration::from_secs(60), |l| {
        l.strip_prefix("dashboard at http://")
            .and_then(|rest| rest.split('/').next())
            .map(str::to_owned)
    });

    // Chromium, headless, with a DevTools endpoint on a free loopback port.
    let profile = tempfile::tempdir().unwrap();
    let _browser = Proc::spawn(
        Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-extensions",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1400,1100",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank"),
    );
    let port = devtools_port(profile.path());
    let pages: Value = serde_json::from_str(&http_get(port, "/json/list")).unwrap();
    let ws_url = pages
        .as_array()
        .and_then(|list| list.iter().find(|p| p["type"] == "page"))
        .and_then(|p| p["webSocketDebuggerUrl"].as_str())
        .expect("a page to drive")
        .to_owned();
    let (socket, _) = within(
        Duration::from_secs(30),
        "the DevTools WebSocket",
        tokio_tungstenite::connect_async(ws_url.as_str()),
    )
    .await
    .unwrap();
    let mut page = Page { socket, next_id: 0 };
    page.call("Page.enable", json!({})).await;
    page.call(
        "Page.navigate",
        json!({ "url": format!("http://{address}/") }),
    )
    .await;

    // While the run moves: the figures grow between looks, and charts appear.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut running_events = Vec::new();
    let last = loop {
        assert!(
            Instant::now() < deadline,
            "the page did not show the finished run within 90 s"
        );
        let seen = page.eval(READ_PAGE).await;
        match seen["state"].as_str() {
            Some("running") => running_events.push(seen["events"].as_u64().unwrap_or(0)),
            Some("finished") => break seen,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    running_events.dedup();
    assert!(
        running_events.len() >= 3,
        "the page showed the events read change at least three times while running: {running_events:?}"
    );
    assert!(
        running_events.windows(2).all(|w| w[0] <= w[1]),
        "events read only grow: {running_events:?}"
    );

    // The run's own summary, as the processor prints it.
    let summary = wait_line(&processor, Duration::from_secs(30), |l| {
        let (events, rest) = l.split_once(" events read: ")?;
        let n = |s: &str| s.trim().split(' ').next()?.parse::<u64>().ok();
        let parts: Vec<&str> = rest.split([',', ';', '(']).collect();
        Some(json!({
            "events": events.parse::<u64>().ok()?,
            "aggregated": n(parts[0])?,
            "late": n(parts[1])?,
            "dead": n(parts[2])?,
            "rows": n(parts[4])?,
            "updates": n(parts[5])?,
        }))
    });
    // Give the page a moment to draw the last rows (it renders four times a second).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = page.eval(READ_PAGE).await;
    assert_eq!(last["events"], seen["events"]);
    for figure in ["events", "late", "dead", "rows", "updates"] {
        assert_eq!(
            seen[figure], summary[figure],
            "{figure}: page {seen} vs run {summary}"
        );
    }
    assert_eq!(seen["uplot"], "function", "uPlot is served from the binary");

    // Keys: the sample's, one chart each, the events per key adding up.
    processor.kill();
    let out = processor.finish(Duration::from_secs(30));
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON row"))
        .collect();
    assert_eq!(rows.len() as u64, summary["rows"].as_u64().unwrap());
    let mut keys: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} · {}",
                r["model"].as_str().unwrap(),
                r["region"].as_str().unwrap()
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    let mut listed: Vec<String> = seen["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, keys, "the page lists every key of the rows");
    assert!(
        listed.iter().any(|k| k == "gpt-4o · us-west-2"),
        "{listed:?}"
    );
    assert_eq!(
        seen["cards"].as_u64().unwrap() as usize,
        keys.len(),
        "one chart per key"
    );
    assert!(
        seen["canvases"].as_u64().unwrap() >= keys.len() as u64,
        "every chart drew on a canvas: {seen}"
    );
    assert_eq!(
        seen["key_events"], summary["aggregated"],
        "each event aggregated is in one window of one key"
    );
    assert!(seen["latest"].as_u64().unwrap() > 0);
    if summary["updates"].as_u64().unwrap() > 0 {
        assert!(
            seen["marked_updates"].as_u64().unwrap() > 0,
            "updates are marked: {seen}"
        );
    }

    let shot = page
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, png).unwrap();
    eprintln!("screenshot: {}", out.display());
}
