//! `dlbook bench --name serve_load`: the model server under load, beside FastAPI.
//!
//! One run trains chapter 5's CNN on MNIST (one epoch), serves it with our server on a
//! free port of 127.0.0.1 (in this process, as `dlbook serve` would: two inference
//! workers), and drives it with [wrk](https://github.com/wg/wrk) at each number of
//! connections for a fixed time. Every request POSTs the same real MNIST test image as
//! JSON; a Lua `done` hook (`serve_load.lua`) prints wrk's latency distribution, which
//! becomes the p50 / p90 / p99 / p99.9 / max of the table, with the requests per second
//! and the count of answers that were not 2xx. wrk is closed-loop: each connection sends
//! its next request when the last is answered, so the mean latency is connections ÷
//! throughput (Little's law) and more connections than the server can absorb only
//! lengthen the queue.
//!
//! When `DLBOOK_FASTAPI_PYTHON` names a Python with FastAPI, uvicorn and PyTorch (set up
//! by hand for the comparison; nothing in the tests needs it), the same weights are
//! served by `serve_fastapi.py` (FastAPI + Pydantic + PyTorch under uvicorn) and get
//! the same load in the same run, with the two servers' answers to one image compared.
//! Both servers are also sent an image with a `NaN` pixel, and the table records what
//! each answered. Last, headless Chromium opens the drawing page, draws a test digit
//! through the page's own hook and takes the screenshot the book shows.
//!
//! Each figure is the median over the runs (the max is the largest seen), with the load
//! average before and after: timings on a shared machine are noisy.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value as Json;

use super::{load_average, median_min_max};
use crate::data::idx::mnist;
use crate::data::{DataDir, Split};
use crate::progress;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::serve::batcher::MAX_BATCH_IMAGES;
use crate::serve::local::{request, Running};
use crate::serve::model::start_workers;
use crate::serve::{AppState, Deployed, ServeConfig};
use crate::train::mnist::{train_and_save, Recipe};

/// The variable naming the Python that has FastAPI, uvicorn and PyTorch.
pub const FASTAPI_PYTHON: &str = "DLBOOK_FASTAPI_PYTHON";

/// What to load, and how long.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServeLoadConfig {
    /// Concurrent connections of each load (wrk `-c`).
    pub connections: Vec<usize>,
    /// Seconds of each load.
    pub seconds: u64,
    /// Loads per number of connections (the table has their medians).
    pub runs: usize,
    /// Our server's inference workers.
    pub threads: usize,
    /// Connections of the ablation: our server with micro-batching off (one request
    /// per forward pass).
    pub unbatched_connections: Vec<usize>,
    /// MNIST training images of the served model's one epoch.
    pub train_images: usize,
}

impl ServeLoadConfig {
    /// Seconds: one short load at 1 and 8 connections on a model trained on 2,000 images.
    pub fn quick() -> Self {
        ServeLoadConfig {
            connections: vec![1, 8],
            seconds: 1,
            runs: 1,
            threads: 2,
            unbatched_connections: vec![8],
            train_images: 2000,
        }
    }

    /// The book's table.
    pub fn full() -> Self {
        ServeLoadConfig {
            connections: vec![1, 8, 64],
            seconds: 10,
            runs: 3,
            threads: 2,
            unbatched_connections: vec![8, 64],
            train_images: 60_000,
        }
    }
}

/// The quantiles read from wrk, in percent.
pub const QUANTILES: [f64; 7] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99];

/// What one wrk load measured.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkRun {
    /// Requests answered per second.
    pub requests_per_s: f64,
    /// Latency at each of [`QUANTILES`], in milliseconds.
    pub quantiles_ms: Vec<f64>,
    /// The slowest request, in milliseconds.
    pub max_ms: f64,
    /// Answers with a status of 400 or more.
    pub non_2xx: u64,
    /// Connect, read and write errors, and timeouts.
    pub errors: u64,
}

/// Reads the `dlbook KEY VALUE` lines `serve_load.lua` prints.
pub fn parse_wrk(stdout: &str) -> Result<WrkRun> {
    let get = |key: &str| -> Result<f64> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("dlbook "))
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse::<f64>().ok())?
            })
            .ok_or_else(|| anyhow!("wrk printed no `dlbook {key}` line:\n{stdout}"))
    };
    let seconds = get("duration_us")? / 1e6;
    ensure!(seconds > 0.0, "wrk ran for no time:\n{stdout}");
    Ok(WrkRun {
        requests_per_s: get("requests")? / seconds,
        quantiles_ms: QUANTILES
            .iter()
            .map(|q| get(&format!("p{q}_us")).map(|us| us / 1e3))
            .collect::<Result<_>>()?,
        max_ms: get("max_us")? / 1e3,
        non_2xx: get("non_2xx")? as u64,
        errors: (get("socket_errors")? + get("timeouts")?) as u64,
    })
}

/// The scratch files of a load: the request body and the wrk script.
struct Load {
    body: PathBuf,
    script: PathBuf,
}

/// One wrk load of `seconds` at `connections` on `addr`.
fn wrk(
    load: &Load,
    addr: SocketAddr,
    connections: usize,
    seconds: u64,
) -> Result<WrkRun> {
    let out = Command::new("wrk")
        .args(["-t", &connections.clamp(1, 2).to_string()])
        .args(["-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--timeout", "10s", "-s"])
        .arg(&load.script)
        .arg(format!("http://{addr}"))
        .env("DLBOOK_WRK_BODY", &load.body)
        .env("DLBOOK_WRK_PATH", "/v1/models/mnist_cnn/predict")
        .output()
        .context("running wrk (install it with `apt-get install wrk`)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&stdout)
}

/// The medians of `runs` (the max: the largest).
fn summarise(runs: &[WrkRun]) -> WrkRun {
    let med = |f: &dyn Fn(&WrkRun) -> f64| {
        median_min_max(&runs.iter().map(f).collect::<Vec<_>>()).0
    };
    WrkRun {
        requests_per_s: med(&|r| r.requests_per_s),
        quantiles_ms: (0..QUANTILES.len())
            .map(|i| med(&|r| r.quantiles_ms[i]))
            .collect(),
        max_ms: runs.iter().map(|r| r.max_ms).fold(0.0, f64::max),
        non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

/// A load of `cfg.runs` runs at each of `connections` on `addr`, summarised per number
/// of connections.
fn load_all(
    load: &Load,
    addr: SocketAddr,
    cfg: &ServeLoadConfig,
    connections: &[usize],
    who: &str,
) -> Result<Vec<(usize, WrkRun)>> {
    let bar = progress::bar(
        (connections.len() * cfg.runs) as u64,
        &format!("wrk on {who}"),
    );
    let mut out = Vec::new();
    for &c in connections {
        let mut runs = Vec::new();
        for _ in 0..cfg.runs {
            bar.set_message(format!("{c} connections"));
            runs.push(wrk(load, addr, c, cfg.seconds)?);
            bar.inc(1);
        }
        out.push((c, summarise(&runs)));
    }
    bar.finish_and_clear();
    Ok(out)
}

/// The status of a prediction request whose first pixel is `NaN` (not JSON, but what
/// a client that writes floats carelessly sends).
fn nan_status(addr: SocketAddr) -> Result<u16> {
    let mut body = String::from("{\"instances\": [[NaN");
    body.push_str(&", 0".repeat(783));
    body.push_str("]]}");
    let (status, _) = request(
        addr,
        "POST",
        "/v1/models/mnist_cnn/predict",
        Some(("application/json", body.as_bytes())),
    )?;
    Ok(status)
}

/// The probabilities a server gives `body`'s first image.
fn probabilities(addr: SocketAddr, body: &[u8]) -> Result<Vec<f64>> {
    let (status, bytes) = request(
        addr,
        "POST",
        "/v1/models/mnist_cnn/predict",
        Some(("application/json", body)),
    )?;
    ensure!(
        status == 200,
        "status {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let v: Json = serde_json::from_slice(&bytes)?;
    v["predictions"][0]["probabilities"]
        .as_array()
        .and_then(|a| a.iter().map(Json::as_f64).collect::<Option<Vec<f64>>>())
        .ok_or_else(|| anyhow!("no probabilities in {v}"))
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve_fastapi.py` with `python` on the model in `weights`; returns the
/// process, its address and the versions it reports, once it answers `/readyz`.
/// Its standard error goes to `log` (PyTorch's tracebacks of the `NaN` request land
/// there, not on the terminal).
fn start_fastapi(
    python: &Path,
    weights: &Path,
    log: &Path,
) -> Result<(Killed, SocketAddr, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut child = Command::new(python)
        .arg("-c")
        .arg(include_str!("serve_fastapi.py"))
        .arg(weights)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    let stdout = child.stdout.take().context("the reference's stdout")?;
    let child = Killed(child);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .context("reading the reference's first line")?;
    let versions = first
        .strip_prefix("ready ")
        .ok_or_else(|| {
            let err = std::fs::read_to_string(log).unwrap_or_default();
            anyhow!(
                "the FastAPI reference did not start: {}",
                err.lines().last().unwrap_or(first.trim())
            )
        })?
        .trim()
        .to_string();
    let start = Instant::now();
    while request(addr, "GET", "/readyz", None).ok().map(|r| r.0) != Some(200) {
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "the FastAPI reference did not answer /readyz within a minute"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((child, addr, versions))
}

/// The Chromium the browser checks run: `DLBOOK_CHROMIUM`, else `chromium` on the path.
pub fn chromium() -> PathBuf {
    std::env::var_os("DLBOOK_CHROMIUM")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("chromium"), PathBuf::from)
}

/// Runs headless Chromium (a fresh profile, nothing fetched but `url`) with `args` and
/// returns its stdout. Virtual time runs up to 15 s, waiting for the page's requests.
pub fn headless(url: &str, args: &[String]) -> Result<String> {
    let profile = std::env::temp_dir().join(format!(
        "dlbook-chromium-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&profile);
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "running {} (install it with `bash .ci/setup all`, or set DLBOOK_CHROMIUM)",
                chromium().display()
            )
        })?;
    let _ = std::fs::remove_dir_all(&profile);
    if !out.status.success() {
        bail!(
            "chromium failed on {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The drawing page's URL on `server` with the test hook drawing `pixels` (28 × 28
/// bytes, 255 = ink).
pub fn page_drawing(server: &Running, pixels: &[u8]) -> String {
    let hex: String = pixels.iter().map(|b| format!("{b:02x}")).collect();
    server.url(&format!("/#draw={hex}"))
}

/// Chapter 5's CNN after one epoch on the first `n_train` MNIST training images, saved in
/// a new scratch folder `dlbook-{what}-{pid}` of the temporary directory: returns the
/// folder, the weights file and the test accuracies.
pub(crate) fn train_for_serving(
    dir: &DataDir,
    n_train: usize,
    what: &str,
) -> Result<(PathBuf, PathBuf, Vec<f64>)> {
    let scratch =
        std::env::temp_dir().join(format!("dlbook-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let weights = scratch.join("mnist_cnn.safetensors");
    let recipe = Recipe {
        n_train,
        n_test: 10_000,
        ..Recipe::new(1, 0)
    };
    let acc = train_and_save(dir, &recipe, &weights, None, None, None)?;
    Ok((scratch, weights, acc))
}

/// A PNG screenshot of `url`, `width` × `height` CSS pixels.
pub(crate) fn screenshot(url: &str, width: u32, height: u32) -> Result<Vec<u8>> {
    let file =
        std::env::temp_dir().join(format!("dlbook-page-{}.png", std::process::id()));
    headless(
        url,
        &[
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", file.display()),
        ],
    )?;
    let png =
        std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let _ = std::fs::remove_file(&file);
    Ok(png)
}

/// Runs the loads of `cfg` and reports them.
pub fn run(cfg: &ServeLoadConfig, dir: &DataDir, name: &str) -> Result<Report> {
    let load_before = load_average();
    let (scratch, weights, acc) = train_for_serving(dir, cfg.train_images, "serve-load")?;
    let test = mnist(dir, Split::Test)?;
    let image = &test.images.pixels[..784];
    let pixels: Vec<f32> = image.iter().map(|&b| f32::from(b) / 255.0).collect();
    let body = serde_json::to_vec(&serde_json::json!({ "instances": [pixels] }))?;
    let load = Load {
        body: scratch.join("body.json"),
        script: scratch.join("serve_load.lua"),
    };
    std::fs::write(&load.body, &body)?;
    std::fs::write(&load.script, include_str!("serve_load.lua"))?;

    let ours_with = |max_batch: usize| -> Result<Running> {
        let state = AppState::new(ServeConfig {
            log_requests: false,
            ..ServeConfig::default()
        });
        let workers = start_workers(&weights, cfg.threads, 1024, max_batch)?;
        state.deploy(Deployed::new("mnist_cnn", "bench", workers));
        Running::start(state, 2)
    };
    let server = ours_with(MAX_BATCH_IMAGES)?;
    let ours = load_all(&load, server.addr, cfg, &cfg.connections, "our server")?;
    let ours_nan = nan_status(server.addr)?;
    let ours_probs = probabilities(server.addr, &body)?;
    let shot = screenshot(&page_drawing(&server, image), 900, 400);
    server.stop()?;
    let server = ours_with(1)?;
    let unbatched = load_all(
        &load,
        server.addr,
        cfg,
        &cfg.unbatched_connections,
        "our server, unbatched",
    )?;
    server.stop()?;

    let reference = match std::env::var_os(FASTAPI_PYTHON).filter(|p| !p.is_empty()) {
        None => Err(anyhow!("{FASTAPI_PYTHON} is not set")),
        Some(python) => (|| -> Result<_> {
            let log = scratch.join("fastapi.log");
            let (child, addr, versions) =
                start_fastapi(Path::new(&python), &weights, &log)?;
            let loads = load_all(&load, addr, cfg, &cfg.connections, "FastAPI")?;
            let nan = nan_status(addr)?;
            let probs = probabilities(addr, &body)?;
            drop(child);
            Ok((loads, nan, probs, versions))
        })(),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    let load_after = load_average();

    let mut r = Report::new(
        "ch13",
        name,
        "The model server under load (wrk), beside FastAPI + PyTorch",
    );
    r.config = serde_json::to_value(cfg)?;
    let (theirs, versions) = match &reference {
        Ok((loads, _, _, v)) => (Some(loads), v.clone()),
        Err(e) => {
            progress::println(format!("FastAPI reference skipped: {e:#}"));
            (None, format!("not run: {e:#}"))
        }
    };
    let mut rows = Vec::new();
    let both = [
        ("ours (axum, from scratch)", &ours),
        ("ours, micro-batching off", &unbatched),
    ]
    .into_iter()
    .chain(theirs.map(|t| ("FastAPI + PyTorch (uvicorn)", t)));
    for (who, loads) in both {
        for (c, w) in loads {
            let q = |p: f64| {
                let i = QUANTILES.iter().position(|&x| x == p).expect("a quantile");
                Value::Num(w.quantiles_ms[i])
            };
            rows.push(vec![
                Value::Text(who.into()),
                Value::Num(*c as f64),
                Value::Num(w.requests_per_s),
                q(50.0),
                q(90.0),
                q(99.0),
                q(99.9),
                Value::Num(w.max_ms),
                Value::Num((w.non_2xx + w.errors) as f64),
            ]);
        }
    }
    r.tables.push(Table {
        name: "latency".into(),
        caption: format!(
            "POST of one MNIST test image as JSON, wrk for {} s × {} runs per row (medians; \
             max: the largest seen); latencies in ms; failed: answers not 2xx plus socket \
             errors and timeouts. Ours: {} inference workers. Reference: {versions}. Load \
             average {:.1} before, {:.1} after",
            cfg.seconds, cfg.runs, cfg.threads, load_before, load_after
        ),
        columns: vec![
            col("server", Format::Int),
            col("connections", Format::Int),
            col("requests/s", Format::Fixed(0)),
            col("p50", Format::Fixed(2)),
            col("p90", Format::Fixed(2)),
            col("p99", Format::Fixed(2)),
            col("p99.9", Format::Fixed(2)),
            col("max", Format::Fixed(2)),
            col("failed", Format::Int),
        ],
        rows,
    });
    if let Ok((loads, nan, probs, _)) = &reference {
        let diff = ours_probs
            .iter()
            .zip(probs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        r.fact("probability_difference", diff, Format::Sci(1));
        r.tables.push(Table {
            name: "ratio".into(),
            caption: "Side by side, same run: throughput ratio (ours ÷ FastAPI) and p99 \
                      latency (ms)"
                .into(),
            columns: vec![
                col("connections", Format::Int),
                col("ours: requests/s", Format::Fixed(0)),
                col("FastAPI: requests/s", Format::Fixed(0)),
                col("throughput ratio", Format::Fixed(1)),
                col("ours: p99", Format::Fixed(2)),
                col("FastAPI: p99", Format::Fixed(2)),
            ],
            rows: ours
                .iter()
                .zip(loads)
                .map(|((c, a), (_, b))| {
                    vec![
                        Value::Num(*c as f64),
                        Value::Num(a.requests_per_s),
                        Value::Num(b.requests_per_s),
                        Value::Num(a.requests_per_s / b.requests_per_s),
                        Value::Num(a.quantiles_ms[4]),
                        Value::Num(b.quantiles_ms[4]),
                    ]
                })
                .collect(),
        });
        r.fact("nan_status_fastapi", *nan as f64, Format::Int);
    }
    r.fact("nan_status_ours", ours_nan as f64, Format::Int);
    r.fact(
        "model_test_accuracy",
        acc.last().copied().unwrap_or(0.0),
        Format::Fixed(4),
    );
    r.fact("load_before", load_before, Format::Fixed(1));
    r.fact("load_after", load_after, Format::Fixed(1));

    let mut series = Vec::new();
    let both = std::iter::once(("ours", &ours)).chain(theirs.map(|t| ("FastAPI", t)));
    for (who, loads) in both {
        for (c, w) in loads {
            series.push(Series {
                name: format!("{who}, {c} connection{}", if *c == 1 { "" } else { "s" }),
                x: QUANTILES.iter().map(|q| 100.0 / (100.0 - q)).collect(),
                y: w.quantiles_ms.clone(),
                band: None,
            });
        }
    }
    r.figures.push(Figure {
        name: "latency".into(),
        title: "Latency distribution under load".into(),
        plot: Plot::Lines {
            x_label: "1 / (1 − quantile): 2 = p50, 10 = p90, 100 = p99, 10⁴ = p99.99"
                .into(),
            y_label: "latency (ms)".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Log,
            series,
        },
    });
    match shot {
        Ok(png) => r.figures.push(Figure {
            name: "page".into(),
            title: format!(
                "The drawing page, MNIST test image 0 (a {}) drawn through its hook",
                test.labels[0]
            ),
            plot: Plot::Picture {
                png_base64: base64::engine::general_purpose::STANDARD.encode(&png),
                width: 900,
                height: 400,
            },
        }),
        Err(e) => progress::println(format!("no screenshot of the page: {e:#}")),
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_becomes_rates_and_milliseconds() {
        let mut text = String::from(
            "Running 1s test @ http://127.0.0.1:1\n\
             dlbook requests 2000\ndlbook duration_us 2000000\ndlbook non_2xx 3\n\
             dlbook socket_errors 1\ndlbook timeouts 0\n",
        );
        for (i, q) in QUANTILES.iter().enumerate() {
            text.push_str(&format!("dlbook p{q}_us {}\n", 1000 * (i + 1)));
        }
        text.push_str("dlbook max_us 25000\n");
        let w = parse_wrk(&text).unwrap();
        assert_eq!(w.requests_per_s, 1000.0);
        assert_eq!(w.quantiles_ms[0], 1.0);
        assert_eq!(w.quantiles_ms[6], 7.0);
        assert_eq!((w.max_ms, w.non_2xx, w.errors), (25.0, 3, 1));
        let e = parse_wrk("dlbook requests 5\n").unwrap_err().to_string();
        assert!(e.contains("duration_us"), "{e}");
    }
}
