//! A client of MLflow's tracking server (its REST API 2.0), the calls [`Tracker`] makes
//! when `MLFLOW_TRACKING_URI` names a server.
//!
//! | call | endpoint |
//! |---|---|
//! | an experiment by name | `GET  /api/2.0/mlflow/experiments/get-by-name` |
//! | a new experiment | `POST /api/2.0/mlflow/experiments/create` |
//! | a new run | `POST /api/2.0/mlflow/runs/create` |
//! | parameters, metrics, tags | `POST /api/2.0/mlflow/runs/log-batch` |
//! | a run's end | `POST /api/2.0/mlflow/runs/update` |
//! | runs read back | `POST /api/2.0/mlflow/runs/search`, `GET .../metrics/get-history` |
//! | an artifact | `PUT  /api/2.0/mlflow-artifacts/artifacts/<path>` (servers that proxy them) |
//! | a run by id, its artifacts | `GET /api/2.0/mlflow/runs/get`, `GET .../artifacts/list`, `GET .../mlflow-artifacts/artifacts/<path>` |
//! | the model registry | see [`super::registry`] |
//!
//! Every failure is a `Result` error that names the call: the server's own `error_code`
//! and `message` when it answered, the transport's error when it did not (a server that
//! accepts the connection and never answers fails after the client's timeout).
//!
//! [`Tracker`]: super::tracking::Tracker

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// How long one call may take before it fails, unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one MLflow tracking server.
#[derive(Clone, Debug)]
pub struct RestClient {
    base: String,
    agent: ureq::Agent,
}

/// A metric value in MLflow's JSON: protobuf's JSON writes the special doubles as
/// strings (JSON has no NaN).
pub(crate) fn json_f64(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(v)
    }
}

/// Reads a double written by [`json_f64`] (or by the server).
fn f64_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            s => s.parse().ok(),
        },
        _ => None,
    }
}

/// An int64 in protobuf's JSON: a number or a string of digits.
pub(crate) fn i64_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A string field of a JSON object, or an error naming it.
pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("MLflow's answer has no string {key:?}: {v}"))
}

/// A metric point as the server returns it: `(timestamp, value, step)`.
pub(crate) fn metric_point(m: &Value) -> Result<(i64, f64, i64)> {
    let get = |k: &str| m.get(k).with_context(|| format!("metric without {k}: {m}"));
    Ok((
        i64_of(get("timestamp")?).context("timestamp")?,
        f64_of(get("value")?).context("value")?,
        m.get("step").and_then(i64_of).unwrap_or(0),
    ))
}

impl RestClient {
    /// A client of the server at `uri` (`http://host:port` or `https://...`), whose
    /// calls fail after `timeout`. Nothing is sent until the first call.
    pub fn new(uri: &str, timeout: Duration) -> Result<RestClient> {
        let base = uri.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("MLflow tracking URI {uri:?}: a server's URI starts with http:// or https://");
        }
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // The server's error answers carry its reasons: read them, not ureq's summary.
            .http_status_as_error(false)
            .build();
        Ok(RestClient {
            base,
            agent: config.into(),
        })
    }

    /// The server's URI.
    pub fn uri(&self) -> &str {
        &self.base
    }

    /// Sends one call and returns the JSON it answers; a status other than 2xx is an
    /// error with the server's `error_code` and `message`.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let what = || format!("MLflow server: {method} {url}");
        let result = match method {
            "GET" => {
                let mut req = self.agent.get(&url);
                for (k, v) in query {
                    req = req.query(k, v);
                }
                req.call()
            }
            "POST" => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.map_or("{}".to_string(), Value::to_string)),
            _ => bail!("unsupported method {method}"),
        };
        let mut resp = result.with_context(what)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().with_context(what)?;
        if !(200..300).contains(&status) {
            return Err(server_error(status, &text)).with_context(what);
        }
        if text.trim().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{}: the answer is not JSON: {text:.200}", what()))
    }

    /// The id of the experiment called `name`, or `None` if there is none.
    pub fn experiment_by_name(&self, name: &str) -> Result<Option<String>> {
        match self.call(
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name",
            &[("experiment_name", name)],
            None,
        ) {
            Ok(v) => Ok(Some(
                str_of(
                    v.get("experiment").context("no experiment in the answer")?,
                    "experiment_id",
                )?
                .to_string(),
            )),
            Err(e) if error_code(&e) == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The id of the experiment called `name`, created if there is none (a rival
    /// creating it at the same moment is not an error).
    pub fn experiment(&self, name: &str) -> Result<String> {
        if let Some(id) = self.experiment_by_name(name)? {
            return Ok(id);
        }
        match self.call(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            &[],
            Some(&json!({ "name": name })),
        ) {
            Ok(v) => Ok(str_of(&v, "experiment_id")?.to_string()),
            Err(e) if error_code(&e) == Some("RESOURCE_ALREADY_EXISTS") => {
                self.experiment_by_name(name)?.with_context(|| {
                    format!("experiment {name:?} exists and cannot be found")
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Every active experiment as `(id, name)`.
    pub fn experiments(&self) -> Result<Vec<(String, String)>> {
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({ "max_results": 1000 });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v = self.call(
                "POST",
                "/api/2.0/mlflow/experiments/search",
                &[],
                Some(&body),
            )?;
            for e in v
                .get("experiments")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push((
                    str_of(e, "experiment_id")?.to_string(),
                    str_of(e, "name")?.to_string(),
                ));
            }
            match v.get("next_page_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Creates a run; returns its id and artifact URI.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time: i64,
        tags: &[(&str, &str)],
    ) -> Result<(String, String)> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        let v = self.call(
            "POST",
            "/api/2.0/mlflow/runs/create",
            &[],
            Some(&json!({
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": start_time,
                "tags": tags,
            })),
        )?;
        let info = v
            .pointer("/run/info")
            .with_context(|| format!("runs/create answered without run.info: {v}"))?;
        Ok((
            str_of(info, "run_id")?.to_string(),
            info.get("artifact_uri")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ))
    }

    /// Logs parameters, metrics `(key, value, timestamp, step)` and tags in one call.
    pub fn log_batch(
        &self,
        run_id: &str,
        params: &[(&str, &str)],
        metrics: &[(&str, f64, i64, i64)],
        tags: &[(&str, &str)],
    ) -> Result<()> {
        let kv = |xs: &[(&str, &str)]| -> Vec<Value> {
            xs.iter()
                .map(|(k, v)| json!({ "key": k, "value": v }))
                .collect()
        };
        let metrics: Vec<Value> = metrics
            .iter()
            .map(|&(k, v, t, s)| {
                json!({ "key": k, "value": json_f64(v), "timestamp": t, "step": s })
            })
            .collect();
        self.call(
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            &[],
            Some(&json!({
                "run_id": run_id,
                "params": kv(params),
                "metrics": metrics,
                "tags": kv(tags),
            })),
        )
        .map(drop)
    }

    /// Sets a run's status (`"FINISHED"`, `"FAILED"`, ...) and end time.
    pub fn update_run(&self, run_id: &str, status: &str, end_time: i64) -> Result<()> {
        self.call(
            "POST",
            "/api/2.0/mlflow/runs/update",
            &[],
            Some(&json!({ "run_id": run_id, "status": status, "end_time": end_time })),
        )
        .map(drop)
    }

    /// Every run of an experiment, as the server's JSON `run` objects.
    pub fn search_runs(&self, experiment_id: &str) -> Result<Vec<Value>> {
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let mut body =
                json!({ "experiment_ids": [experiment_id], "max_results": 1000 });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v = self.call("POST", "/api/2.0/mlflow/runs/search", &[], Some(&body))?;
            out.extend(
                v.get("runs")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            match v.get("next_page_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Every value of metric `key` of a run, `(timestamp, value, step)`, in step order.
    pub fn metric_history(
        &self,
        run_id: &str,
        key: &str,
    ) -> Result<Vec<(i64, f64, i64)>> {
        let v = self.call(
            "GET",
            "/api/2.0/mlflow/metrics/get-history",
            &[
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", "25000"),
            ],
            None,
        )?;
        let mut points = v
            .get("metrics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(metric_point)
            .collect::<Result<Vec<_>>>()?;
        points.sort_by_key(|p| (p.2, p.0));
        Ok(points)
    }

    /// Uploads `bytes` as artifact `name` of the run whose artifact URI is
    /// `artifact_uri`, through the server's artifact proxy (`mlflow server
    /// --serve-artifacts`, the default). A run whose artifacts live elsewhere (an S3
    /// bucket the client should write itself) is an error saying so.
    pub fn put_artifact(
        &self,
        artifact_uri: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let url = self.artifact_url(artifact_uri, name)?;
        let what = || format!("MLflow server: PUT {url}");
        let mut resp = self
            .agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .send(bytes)
            .with_context(what)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(server_error(status, &text)).with_context(what);
        }
        Ok(())
    }
}

impl RestClient {
    /// The proxy's URL of artifact `name` under `artifact_uri` (`mlflow-artifacts:/path`
    /// or `mlflow-artifacts://host:port/path`).
    fn artifact_url(&self, artifact_uri: &str, name: &str) -> Result<String> {
        let path = artifact_uri
            .strip_prefix("mlflow-artifacts:")
            .map(|rest| match rest.strip_prefix("//") {
                Some(hosted) => hosted.split_once('/').map_or("", |(_, p)| p),
                None => rest.trim_start_matches('/'),
            })
            .with_context(|| {
                format!(
                    "the run's artifacts go to {artifact_uri:?}, not through the server \
                     (start it with --serve-artifacts to move artifacts over REST)"
                )
            })?;
        Ok(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{path}/{name}",
            self.base
        ))
    }

    /// Downloads artifact `name` under `artifact_uri` through the server's proxy.
    pub fn get_artifact(&self, artifact_uri: &str, name: &str) -> Result<Vec<u8>> {
        let url = self.artifact_url(artifact_uri, name)?;
        let what = || format!("MLflow server: GET {url}");
        let mut resp = self.agent.get(&url).call().with_context(what)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(server_error(status, &text)).with_context(what);
        }
        resp.body_mut()
            .with_config()
            .limit(1 << 32)
            .read_to_vec()
            .with_context(what)
    }

    /// Every item of a paged `GET` search (`registered-models/search`,
    /// `model-versions/search`): the arrays under `key` of every page.
    pub fn search_all(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>> {
        let mut out = vec![];
        let mut token = String::new();
        loop {
            let mut q = query.to_vec();
            q.push(("max_results", "1000"));
            if !token.is_empty() {
                q.push(("page_token", &token));
            }
            let v = self.call("GET", path, &q, None)?;
            out.extend(
                v.get(key)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            match v.get("next_page_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => return Ok(out),
            }
        }
    }

    /// A run as the server's JSON `run` object (`runs/get`).
    pub fn get_run(&self, run_id: &str) -> Result<Value> {
        let v = self.call(
            "GET",
            "/api/2.0/mlflow/runs/get",
            &[("run_id", run_id)],
            None,
        )?;
        v.get("run")
            .cloned()
            .with_context(|| format!("runs/get answered without a run: {v}"))
    }

    /// The paths of a run's top-level artifacts (`artifacts/list`).
    pub fn list_artifacts(&self, run_id: &str) -> Result<Vec<String>> {
        let v = self.call(
            "GET",
            "/api/2.0/mlflow/artifacts/list",
            &[("run_id", run_id)],
            None,
        )?;
        v.get("files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|f| str_of(f, "path").map(str::to_string))
            .collect()
    }
}

/// The error a server's answer describes.
#[derive(Debug)]
pub struct ServerError {
    /// The HTTP status.
    pub status: u16,
    /// MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`, `INVALID_PARAMETER_VALUE`, ...),
    /// empty when the answer had none.
    pub code: String,
    /// The server's message, or the start of its answer.
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ServerError {}

fn server_error(status: u16, text: &str) -> anyhow::Error {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    anyhow!(ServerError {
        status,
        code: field("error_code").unwrap_or_default(),
        message: field("message").unwrap_or_else(|| text.chars().take(300).collect()),
    })
}

/// MLflow's error code of an error from [`RestClient`], if the server gave one.
pub fn error_code(e: &anyhow::Error) -> Option<&str> {
    e.chain()
        .find_map(|c| c.downcast_ref::<ServerError>())
        .map(|s| s.code.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-shot HTTP server that answers `status` and `body` to the first request.
    fn answer_once(status: &str, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let status = status.to_string();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        });
        format!("http://{addr}")
    }

    #[test]
    fn a_server_error_names_its_code_and_message() {
        let uri = answer_once(
            "400 Bad Request",
            r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "Changing param values is not allowed"}"#,
        );
        let c = RestClient::new(&uri, Duration::from_secs(5)).unwrap();
        let e = c.log_batch("abc", &[("lr", "0.1")], &[], &[]).unwrap_err();
        assert_eq!(error_code(&e), Some("INVALID_PARAMETER_VALUE"));
        let text = format!("{e:#}");
        assert!(
            text.contains("runs/log-batch") && text.contains("Changing param"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_experiment_is_none_not_an_error() {
        let uri = answer_once(
            "404 Not Found",
            r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}"#,
        );
        let c = RestClient::new(&uri, Duration::from_secs(5)).unwrap();
        assert_eq!(c.experiment_by_name("nope").unwrap(), None);
    }

    #[test]
    fn a_silent_server_times_out() {
        // Accepts connections (the kernel's backlog does) and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let c = RestClient::new(&uri, Duration::from_millis(300)).unwrap();
        let t = std::time::Instant::now();
        let e = c.experiment("x").unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(format!("{e:#}").contains("get-by-name"), "{e:#}");
        drop(listener);
    }

    #[test]
    fn a_refused_connection_and_a_bad_uri_are_errors() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(); // closed again at once: nothing listens there
        let c = RestClient::new(&format!("http://127.0.0.1:{port}"), DEFAULT_TIMEOUT)
            .unwrap();
        assert!(c.experiment("x").is_err());
        assert!(RestClient::new("sqlite:///x.db", DEFAULT_TIMEOUT).is_err());
    }

    #[test]
    fn special_doubles_survive_json() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.25] {
            let back = f64_of(&json_f64(v)).unwrap();
            assert!(back == v || (v.is_nan() && back.is_nan()));
        }
    }
}
