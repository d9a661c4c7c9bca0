//! Chapter 13, the server watching itself: a drift reference, a server that compares
//! the images it answers with it and exports every detector's alarm on `/metrics`, and
//! the dashboard page, read back from headless Chromium.
//!
//! One scenario runs once and the tests share it: chapter 5's CNN (trained for the
//! page test), a reference from the first 500 MNIST test images, then 400 other test
//! images sent clean and the same 400 thickened ([`dlbook::bench::monitor::watch`]).

use std::sync::OnceLock;

use dlbook::bench::monitor::{metric, watch, WatchConfig};
use dlbook::bench::serve::headless;
use dlbook::data::DataDir;
use dlbook::mlops::drift::Detector;
use dlbook::serve::drift::{labels, Reference, FORMAT};
use dlbook::serve::local::request;
use serde_json::Value;

/// What the scenario left: `/metrics` after each phase, `/dashboard.json` and the
/// page's DOM once the traffic had stopped.
struct Scenario {
    after_clean: String,
    after_shift: String,
    data: Value,
    dom: String,
}

fn scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(|| {
        let w = watch(
            &WatchConfig::quick(),
            &DataDir::resolve(None),
            super::ch13_page::trained(),
        )
        .unwrap();
        // One more sample, so the page and the JSON see the same closed intervals.
        std::thread::sleep(std::time::Duration::from_millis(600));
        let (_, body) = request(w.server.addr, "GET", "/dashboard.json", None).unwrap();
        let data: Value = serde_json::from_slice(&body).unwrap();
        let dom = headless(&w.server.url("/dashboard"), &["--dump-dom".into()]).unwrap();
        w.server.stop().unwrap();
        Scenario {
            after_clean: w.after_clean,
            after_shift: w.after_shift,
            data,
            dom,
        }
    })
}

/// `/metrics` of a live server after traffic and drift checks (what the alert rules and
/// the Grafana dashboard are checked against).
pub(crate) fn live_metrics() -> String {
    scenario().after_shift.clone()
}

/// Each detector's alarm gauge in a `/metrics` text, with its labels.
fn alarms(text: &str) -> Vec<(String, f64)> {
    Detector::ALL
        .iter()
        .map(|&d| {
            let (det, feat) = labels(d);
            let l = format!("detector=\"{det}\",feature=\"{feat}\"");
            let v = metric(text, "dlbook_drift_alarm", &l)
                .unwrap_or_else(|| panic!("no dlbook_drift_alarm{{{l}}} in:\n{text}"));
            (format!("{det}/{feat}"), v)
        })
        .collect()
}

/// A server with a drift reference exports every detector's alarm on `/metrics`: none
/// raised while it answers clean test digits, and alarms from the tests on the ink and
/// on the embedding once the same digits come thickened; the monitor took every image
/// and dropped none.
#[test]
fn a_shift_raises_drift_alarms_on_metrics_and_clean_traffic_does_not() {
    let s = scenario();
    let clean = alarms(&s.after_clean);
    assert!(
        clean.iter().all(|(_, v)| *v == 0.0),
        "alarms on clean digits: {clean:?}"
    );
    let shifted = alarms(&s.after_shift);
    for must in ["ks/ink", "mmd/embedding"] {
        assert!(
            shifted.iter().any(|(k, v)| k == must && *v == 1.0),
            "no {must} alarm on thickened digits: {shifted:?}"
        );
    }
    let dropped = metric(&s.after_shift, "dlbook_drift_requests_total", "dropped");
    assert!(
        dropped.unwrap_or(0.0) == 0.0,
        "the monitor dropped {dropped:?} images"
    );
    assert_eq!(metric(&s.after_shift, "dlbook_model_ready", ""), Some(1.0));
    let checks = metric(&s.after_shift, "dlbook_drift_checks_total", "").unwrap();
    // 800 images, a window of 200 checked every 100: checks at 200, 300, ..., 800.
    assert_eq!(checks, 7.0);
}

/// The dashboard page shows what `/dashboard.json` holds: the requests, the predicted
/// classes, and each detector's latest score and alarm.
#[test]
fn the_dashboard_shows_the_numbers_the_server_reports() {
    let s = scenario();
    let dom = &s.dom;
    let text_of = |id: &str| super::ch13_page::element(dom, id);
    assert_eq!(text_of("ready"), "ready");
    assert_eq!(
        text_of("requests-total"),
        s.data["dashboard"]["total_requests"].to_string()
    );
    // 800 images in requests of 20.
    assert_eq!(s.data["dashboard"]["total_requests"], 40);
    let classes = s.data["classes"].as_array().unwrap();
    assert_eq!(
        classes.iter().map(|c| c.as_u64().unwrap()).sum::<u64>(),
        800
    );
    for (k, c) in classes.iter().enumerate() {
        assert_eq!(text_of(&format!("class-{k}")), c.to_string(), "class {k}");
    }
    let drift = &s.data["dashboard"]["drift"];
    let last = drift["checks"].as_array().unwrap().last().unwrap();
    for (i, det) in drift["detectors"].as_array().unwrap().iter().enumerate() {
        let key = format!(
            "{}-{}",
            det["detector"].as_str().unwrap(),
            det["feature"].as_str().unwrap()
        );
        let shown: f64 = text_of(&format!("score-{key}")).parse().unwrap();
        let score = last["scores"][i].as_f64().unwrap();
        assert!(
            (shown - score).abs() <= 1e-3 * score.abs().max(1e-12),
            "{key}: the page shows {shown}, the server {score}"
        );
        let alarm = if last["alarms"][i] == true {
            "ALARM"
        } else {
            "ok"
        };
        assert_eq!(text_of(&format!("alarm-{key}")), alarm, "{key}");
    }
    // Latency tiles hold numbers the samples hold.
    let p99: f64 = text_of("p99").parse().unwrap();
    assert!(p99 > 0.0);
}

/// Like the drawing page, the dashboard is one HTML file that fetches nothing but the
/// server's own JSON.
#[test]
fn the_dashboard_is_one_self_contained_html_file() {
    let page = dlbook::serve::DASHBOARD_PAGE;
    assert!(page.starts_with("<!DOCTYPE html>"));
    for external in ["src=", "href=", "@import", "url(", "http://", "https://"] {
        assert!(!page.contains(external), "the page refers to `{external}`");
    }
    assert!(page.contains("fetch(\"dashboard.json\""));
}

/// A reference file that is cut short, of another layout, or whose columns disagree is
/// refused with an error that says so.
#[test]
fn a_bad_drift_reference_is_refused_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("dlbook-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = Reference::new(
        "ab",
        dlbook::serve::drift::default_monitor(),
        &(0..300)
            .map(|i| dlbook::mlops::drift::Request {
                class: i % 10,
                confidence: 0.9,
                ink: 0.1 + (i % 7) as f64 / 100.0,
                embedding: vec![i as f64 / 300.0; 4],
            })
            .collect::<Vec<_>>(),
    );
    let path = dir.join("ref.json");
    good.save(&path).unwrap();
    let back = Reference::load(&path).unwrap();
    assert_eq!((back.class.len(), back.monitor), (300, good.monitor));
    assert!(back
        .ink
        .iter()
        .zip(&good.ink)
        .all(|(a, b)| (a - b).abs() < 1e-12));
    let text = std::fs::read(&path).unwrap();
    let err = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        format!("{:#}", Reference::load(&path).unwrap_err())
    };
    let e = err(&text[..text.len() / 2]);
    assert!(
        e.contains("is not a drift reference") && e.contains("EOF"),
        "{e}"
    );
    let mut other = good.clone();
    other.format = "something/9".into();
    let e = err(&serde_json::to_vec(&other).unwrap());
    assert!(e.contains(FORMAT), "{e}");
    let mut short = good.clone();
    short.ink.pop();
    let e = err(&serde_json::to_vec(&short).unwrap());
    assert!(e.contains("differ in length"), "{e}");
    let mut wide = good.clone();
    wide.embedding[7].push(1.0);
    let e = err(&serde_json::to_vec(&wide).unwrap());
    assert!(e.contains("embedding 7 has 5 values"), "{e}");
    let mut few = good.clone();
    few.monitor.window = 1000;
    let e = err(&serde_json::to_vec(&few).unwrap());
    assert!(e.contains("fewer than one window"), "{e}");
    // An MMD test with 50 permutations has p >= 1/51: at alpha = 0.001 it could never
    // alarm.
    let mut blind = good;
    (blind.monitor.n_permutations, blind.monitor.alpha) = (50, 0.001);
    let e = err(&serde_json::to_vec(&blind).unwrap());
    assert!(e.contains("could never alarm"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
