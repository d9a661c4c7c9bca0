//! Chapter 13, the model server: every route answered through the router itself (no
//! network), every validation rule seen from the outside as a status and a JSON error,
//! and one real socket: a server bound to a free port, asked over TCP, shut down
//! gracefully with a request in flight.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dlbook::serve::batcher::{Batcher, Classifier};
use dlbook::serve::model::MnistCnn;
use dlbook::serve::validate::{MAX_BATCH, PIXELS};
use dlbook::serve::{router, AppState, Deployed, ServeConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

fn quiet() -> ServeConfig {
    ServeConfig {
        log_requests: false,
        ..ServeConfig::default()
    }
}

/// A quiet server with the (untrained) MNIST CNN as `mnist_cnn` at `version`, on
/// `workers` inference threads taking batches of at most `max_batch` images (the other
/// chapter 13 tests start theirs here too).
pub(crate) fn untrained(version: &str, workers: usize, max_batch: usize) -> AppState {
    let s = AppState::new(quiet());
    let load = Arc::new(|| Ok(Box::new(MnistCnn::untrained(0)) as Box<dyn Classifier>));
    s.deploy(Deployed::new(
        "mnist_cnn",
        version,
        Batcher::start(load, workers, max_batch).unwrap(),
    ));
    s
}

/// A server with the (untrained) MNIST CNN on one worker.
fn state() -> AppState {
    untrained("test-1", 1, 64)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends one request through the router; returns the status, the body as JSON (or
/// `Value::String` of the text) and the `x-request-id` header.
fn call(s: &AppState, req: Request<Body>) -> (StatusCode, Value, Option<String>) {
    rt().block_on(async {
        let resp = router(s.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let id = resp
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        (status, body, id)
    })
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn image(v: f64) -> Value {
    Value::Array(vec![json!(v); PIXELS])
}

const PREDICT: &str = "/v1/models/mnist_cnn/predict";

#[test]
fn predict_answers_one_distribution_per_image() {
    let s = state();
    let body = json!({"instances": [image(0.0), image(0.5), image(1.0)]}).to_string();
    let (status, v, id) = call(&s, post(PREDICT, body));
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(id.is_some_and(|i| !i.is_empty()));
    assert_eq!(v["model"], "mnist_cnn");
    assert_eq!(v["version"], "test-1");
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    for p in preds {
        let probs: Vec<f64> = p["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(probs.len(), 10);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        let class = p["class"].as_u64().unwrap() as usize;
        assert!(probs.iter().all(|&q| q <= probs[class]));
    }
}

/// The answers of a batch equal the answers of its images sent one by one: batching (in
/// one request, or across requests by the workers) does not change a prediction.
#[test]
fn batching_does_not_change_predictions() {
    let s = state();
    let images: Vec<Value> = (0..4)
        .map(|i| {
            Value::Array(
                (0..PIXELS)
                    .map(|j| json!(((i * 31 + j * 7) % 256) as f64 / 255.0))
                    .collect(),
            )
        })
        .collect();
    let (_, batch, _) = call(
        &s,
        post(PREDICT, json!({ "instances": images }).to_string()),
    );
    for (i, img) in images.iter().enumerate() {
        let (_, one, _) =
            call(&s, post(PREDICT, json!({ "instances": [img] }).to_string()));
        let a = &batch["predictions"][i]["probabilities"];
        let b = &one["predictions"][0]["probabilities"];
        for k in 0..10 {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            assert!((x - y).abs() < 1e-5, "image {i}, class {k}: {x} vs {y}");
        }
    }
}

#[test]
fn every_invalid_body_is_a_4xx_with_a_json_error_saying_where() {
    let s = state();
    let mut wrong_pixel = vec![json!(0.0); PIXELS];
    wrong_pixel[100] = json!(2.0);
    let cases: Vec<(String, u16, &str, Option<&str>)> = vec![
        ("{\"instances\": [[0.1".into(), 400, "malformed_json", None),
        (
            "{\"instances\": [[NaN]]}".into(),
            400,
            "malformed_json",
            None,
        ),
        ("[]".into(), 422, "not_an_object", Some("")),
        ("{}".into(), 422, "missing_field", Some("")),
        (
            json!({"instances": []}).to_string(),
            422,
            "empty_batch",
            Some("/instances"),
        ),
        (
            json!({ "instances": vec![image(0.0); MAX_BATCH + 1] }).to_string(),
            422,
            "batch_too_large",
            Some("/instances"),
        ),
        (
            json!({"instances": [[0.5, 0.5]]}).to_string(),
            422,
            "wrong_length",
            Some("/instances/0"),
        ),
        (
            json!({ "instances": [image(0.0), wrong_pixel] }).to_string(),
            422,
            "out_of_range",
            Some("/instances/1/100"),
        ),
        (
            json!({"instances": [image(0.0)], "x": 1}).to_string(),
            422,
            "unknown_field",
            Some("/x"),
        ),
    ];
    for (body, status, code, path) in cases {
        let (st, v, _) = call(&s, post(PREDICT, body.clone()));
        let short: String = body.chars().take(40).collect();
        assert_eq!(st.as_u16(), status, "{short}: {v}");
        assert_eq!(v["error"]["code"], code, "{short}: {v}");
        assert_eq!(v["error"]["path"].as_str(), path, "{short}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
}

#[test]
fn wrong_media_type_unknown_model_and_unknown_route_are_4xx() {
    let s = state();
    let body = json!({"instances": [image(0.0)]}).to_string();
    let req = Request::post(PREDICT)
        .header("content-type", "text/plain")
        .body(Body::from(body.clone()))
        .unwrap();
    let (st, v, _) = call(&s, req);
    assert_eq!(
        (st.as_u16(), v["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (st, v, _) = call(&s, post("/v1/models/resnet/predict", body));
    assert_eq!(
        (st.as_u16(), v["error"]["code"].as_str()),
        (404, Some("unknown_model"))
    );
    let (st, _, _) = call(&s, Request::get("/nowhere").body(Body::empty()).unwrap());
    assert_eq!(st.as_u16(), 404);
    let (st, _, _) = call(&s, Request::get(PREDICT).body(Body::empty()).unwrap());
    assert_eq!(st.as_u16(), 405);
}

#[test]
fn an_oversized_body_is_a_413() {
    let s = state();
    let body = vec![b' '; dlbook::serve::validate::MAX_BODY_BYTES + 10];
    let (st, v, _) = call(&s, post(PREDICT, body));
    assert_eq!(st.as_u16(), 413, "{v}");
}

#[test]
fn ready_only_with_a_model() {
    let empty = AppState::new(quiet());
    let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
    assert_eq!(call(&empty, get("/healthz")).0, StatusCode::OK);
    assert_eq!(
        call(&empty, get("/readyz")).0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let body = json!({"instances": [image(0.0)]}).to_string();
    let (st, v, _) = call(&empty, post(PREDICT, body));
    assert_eq!(
        (st.as_u16(), v["error"]["code"].as_str()),
        (503, Some("not_ready"))
    );
    let s = state();
    let (st, v, _) = call(&s, get("/readyz"));
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["version"], "test-1");
}

#[test]
fn the_client_request_id_is_echoed() {
    let s = state();
    let req = Request::get("/healthz")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&s, req).2.as_deref(), Some("abc-123"));
}

#[test]
fn metrics_count_requests_by_route_and_status() {
    let s = state();
    let body = json!({"instances": [image(0.0)]}).to_string();
    call(&s, post(PREDICT, body));
    call(&s, post(PREDICT, "{}"));
    let (st, text, _) = call(&s, Request::get("/metrics").body(Body::empty()).unwrap());
    assert_eq!(st, StatusCode::OK);
    let text = text.as_str().unwrap().to_string();
    for needle in [
        "dlbook_http_requests_total{route=\"/v1/models/{name}/predict\",status=\"200\"} 1",
        "dlbook_http_requests_total{route=\"/v1/models/{name}/predict\",status=\"422\"} 1",
        "dlbook_http_request_duration_seconds_bucket{",
        "dlbook_model_loaded{model=\"mnist_cnn\",version=\"test-1\"} 1",
    ] {
        assert!(text.contains(needle), "no `{needle}` in:\n{text}");
    }
}

/// The document describes every route the router has, and its limits are the
/// validator's.
#[test]
fn openapi_document_matches_the_validator() {
    let s = state();
    let (st, doc, _) = call(
        &s,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    );
    assert_eq!(st, StatusCode::OK);
    let inst = &doc["components"]["schemas"]["PredictRequest"]["properties"]["instances"];
    assert_eq!(inst["maxItems"], MAX_BATCH);
    assert_eq!(inst["items"]["minItems"], PIXELS);
    assert_eq!(inst["items"]["maxItems"], PIXELS);
    for path in [
        "/v1/models/{name}/predict",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

/// Reads one HTTP/1.1 response (the server closes after `connection: close`).
fn http(addr: SocketAddr, request: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// A real socket: the server binds, answers over TCP, and on shutdown finishes the
/// request in flight before it returns.
#[test]
fn serves_over_tcp_and_shuts_down_gracefully() {
    struct Slow;
    impl Classifier for Slow {
        fn n_classes(&self) -> usize {
            10
        }
        fn predict(&mut self, _: &[f32], n: usize) -> Vec<f32> {
            std::thread::sleep(Duration::from_millis(300));
            vec![0.1; n * 10]
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = AppState::new(quiet());
    let load = Arc::new(|| Ok(Box::new(Slow) as Box<dyn Classifier>));
    s.deploy(Deployed::new(
        "mnist_cnn",
        "slow",
        Batcher::start(load, 1, 8).unwrap(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        rt().block_on(dlbook::serve::serve(addr, s, async {
            let _ = stop_rx.await;
        }))
    });
    // Wait for the port (bounded).
    let mut up = false;
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(up, "the server did not bind {addr}");
    let health = http(
        addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    let body = json!({"instances": [image(0.0)]}).to_string();
    let req = format!(
        "POST {PREDICT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let in_flight = std::thread::spawn(move || http(addr, &req));
    std::thread::sleep(Duration::from_millis(100));
    stop_tx.send(()).unwrap();
    let answer = in_flight.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"version\":\"slow\""), "{answer}");
    server.join().unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after shutdown"
    );
}
