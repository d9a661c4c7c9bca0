//! Chapter 13, the container and the cluster: the Dockerfile and the Kubernetes manifests
//! in `deploy/` read as data and checked against the server they run (the routes their
//! probes ask are asked of the real router, the port they name is the one the server
//! listens on), and the health probe the image runs, against a real socket.
//!
//! The image itself is built and started by `.ci/image-smoke` (buildah, then the server
//! from the mounted image), which `bash .ci/test` runs: it needs root and minutes, not
//! what a unit test may take.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dlbook::deploy::probe;
use dlbook::serve::{router, AppState, ServeConfig};
use serde_norway::Value;
use tower::ServiceExt;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------
// The Dockerfile, as a list of instructions.

/// One instruction: its keyword (upper case) and its arguments, continuation lines
/// joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The Dockerfile's instructions, in order (comments and blank lines dropped, lines
/// ending in `\` joined to the next).
fn dockerfile() -> Vec<Instruction> {
    let text = read("deploy/Dockerfile");
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && pending.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(t);
                let (k, a) = pending.split_once(' ').unwrap_or((pending.as_str(), ""));
                out.push(Instruction {
                    keyword: k.to_uppercase(),
                    args: a.trim().to_string(),
                });
                pending.clear();
            }
        }
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends in a continuation line"
    );
    out
}

/// The instructions of the stage that starts with `FROM ... AS name` (the last stage
/// for `None`).
fn stage<'a>(all: &'a [Instruction], name: Option<&str>) -> Vec<&'a Instruction> {
    let starts: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].keyword == "FROM")
        .collect();
    let start = match name {
        None => *starts.last().expect("no FROM"),
        Some(n) => *starts
            .iter()
            .find(|&&i| all[i].args.ends_with(&format!(" AS {n}")))
            .unwrap_or_else(|| panic!("no stage named {n}")),
    };
    let end = starts
        .iter()
        .find(|&&i| i > start)
        .copied()
        .unwrap_or(all.len());
    all[start..end].iter().collect()
}

/// The arguments of the one `keyword` instruction of `stage` (panics if not exactly one).
fn one<'a>(stage: &[&'a Instruction], keyword: &str) -> &'a str {
    let found: Vec<_> = stage.iter().filter(|i| i.keyword == keyword).collect();
    assert_eq!(found.len(), 1, "{keyword}: {found:?}");
    &found[0].args
}

/// A JSON-array (exec form) instruction argument, parsed.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("not an exec-form array {args}: {e}"))
}

// ---------------------------------------------------------------------------------------
// The server the manifests describe.

fn server() -> AppState {
    super::ch13_serve::untrained("test", 1, 8)
}

/// The status the real router answers to `GET path`.
fn status_of(s: &AppState, path: &str) -> StatusCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let req = Request::get(path).body(Body::empty()).unwrap();
        router(s.clone()).oneshot(req).await.unwrap().status()
    })
}

/// `dlbook <args> --help`: the options the real command line takes.
fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dlbook"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "dlbook {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Every `--flag` in `args` is an option of `dlbook <command>`.
fn assert_takes(command: &[&str], args: &[&str]) {
    let help = help(command);
    for a in args.iter().filter(|a| a.starts_with("--")) {
        let flag = a.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")),
            "dlbook {command:?} has no {flag}"
        );
    }
}

/// The path of a `http://host:port/path` URL and its port.
fn url_parts(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let port = host_port
        .rsplit_once(':')
        .expect("a port")
        .1
        .parse()
        .unwrap();
    (port, format!("/{path}"))
}

/// The port and the routes of the image: its EXPOSE, its ENTRYPOINT's `--addr`, its
/// HEALTHCHECK.
fn image_port() -> u16 {
    let all = dockerfile();
    let runtime = stage(&all, None);
    let exposed: u16 = one(&runtime, "EXPOSE").parse().unwrap();
    let entry = exec_form(one(&runtime, "ENTRYPOINT"));
    let addr = &entry[entry.iter().position(|a| a == "--addr").unwrap() + 1];
    let addr: SocketAddr = addr.parse().unwrap();
    assert_eq!(
        addr.port(),
        exposed,
        "ENTRYPOINT listens on {addr}, EXPOSE {exposed}"
    );
    exposed
}

// ---------------------------------------------------------------------------------------
// The manifests.

fn yaml(rel: &str) -> Value {
    serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `v[a][b]...`, panicking with the path when a key is missing.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| {
        let next = match k.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(k),
        };
        next.unwrap_or_else(|| panic!("no {k} in {path}"))
    })
}

/// A sequence of strings.
fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .expect("a list")
        .iter()
        .map(|a| a.as_str().expect("a string"))
        .collect()
}

fn text<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

/// A Kubernetes quantity in base units: CPUs (`500m` = 0.5) or bytes (`128Mi`).
fn quantity(v: &Value) -> f64 {
    let s = match v {
        Value::Number(n) => return n.as_f64().unwrap(),
        Value::String(s) => s.as_str(),
        _ => panic!("not a quantity: {v:?}"),
    };
    let units = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
    ];
    for (suffix, scale) in units {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap() * scale;
        }
    }
    s.parse().unwrap_or_else(|_| panic!("not a quantity: {s}"))
}

/// The first container of a pod template (`spec.template.spec.containers.0`).
fn container(workload: &Value) -> &Value {
    at(workload, "spec.template.spec.containers.0")
}

/// The container port a probe or a Service names (by name or by number).
fn port_of(container: &Value, port: &Value) -> u16 {
    match port {
        Value::Number(n) => n.as_u64().unwrap() as u16,
        Value::String(name) => {
            let ports = at(container, "ports").as_sequence().unwrap();
            let p = ports
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))
                .unwrap_or_else(|| panic!("no container port named {name}"));
            at(p, "containerPort").as_u64().unwrap() as u16
        }
        _ => panic!("not a port: {port:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Usage listings: what the chapter's claims are about.

/// The image's stages: (stage name, base image) in order.
pub fn image_stages() -> Vec<(String, String)> {
    dockerfile()
        .iter()
        .filter(|i| i.keyword == "FROM")
        .map(|i| {
            let (base, name) = i.args.split_once(" AS ").unwrap_or((i.args.as_str(), ""));
            (name.trim().to_string(), base.trim().to_string())
        })
        .collect()
}

/// What the final image runs: its user, its exposed port, its health-check command.
pub fn runtime_image() -> (String, u16, Vec<String>) {
    let all = dockerfile();
    let runtime = stage(&all, None);
    let user = one(&runtime, "USER").to_string();
    let check = one(&runtime, "HEALTHCHECK");
    let cmd = check
        .split_once("CMD ")
        .expect("HEALTHCHECK ... CMD [...]")
        .1;
    (user, image_port(), exec_form(cmd))
}

// ---------------------------------------------------------------------------------------
// The image.

#[test]
fn the_image_builds_in_two_stages_and_ships_no_toolchain() {
    let stages = image_stages();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert_eq!(stages[0].0, "build");
    assert!(stages[0].1.starts_with("rust:"), "{stages:?}");
    assert!(stages[1].1.starts_with("debian:"), "{stages:?}");
    assert!(stages[1].1.ends_with("-slim"), "{stages:?}");
    let all = dockerfile();
    let build = stage(&all, Some("build"));
    let cargo = build
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("a RUN cargo build in the build stage");
    for flag in ["--release", "--locked"] {
        assert!(cargo.args.contains(flag), "cargo build without {flag}");
    }
    // The registry and the target folder outlive the build: dependencies are compiled
    // once.
    for cache in ["/usr/local/cargo/registry", "/src/target"] {
        assert!(
            cargo
                .args
                .contains(&format!("--mount=type=cache,target={cache}")),
            "no cache mount for {cache}"
        );
    }
    // The runtime stage takes the binary from the build stage, and nothing else of it.
    let runtime = stage(&all, None);
    let from_build: Vec<_> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY" && i.args.contains("--from="))
        .collect();
    assert_eq!(from_build.len(), 1, "{from_build:?}");
    assert!(from_build[0]
        .args
        .starts_with("--from=build /usr/local/bin/dlbook "));
}

#[test]
fn the_image_runs_as_a_non_root_user() {
    let (user, _, _) = runtime_image();
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    let uid: u32 = uid
        .parse()
        .expect("a numeric uid (Kubernetes checks runAsNonRoot by it)");
    assert!(uid > 0 && gid.parse::<u32>().unwrap() > 0, "{user}");
    // The user is created before it is named, with that uid.
    let all = dockerfile();
    let runtime = stage(&all, None);
    assert!(
        runtime
            .iter()
            .any(|i| i.keyword == "RUN"
                && i.args.contains(&format!("useradd --uid {uid} ")))
    );
}

#[test]
fn the_health_check_probes_a_route_the_server_answers() {
    let (_, port, cmd) = runtime_image();
    assert_eq!(cmd[..2], ["dlbook", "probe"], "{cmd:?}");
    let (probe_port, path) = url_parts(&cmd[2]);
    assert_eq!(probe_port, port);
    assert_eq!(status_of(&server(), &path), StatusCode::OK, "{path}");
}

#[test]
fn the_container_listens_on_every_interface_the_host_default_on_loopback() {
    let all = dockerfile();
    let entry = exec_form(one(&stage(&all, None), "ENTRYPOINT"));
    assert_eq!(entry[..2], ["dlbook", "serve"]);
    let addr = &entry[entry.iter().position(|a| a == "--addr").unwrap() + 1];
    assert!(addr.starts_with("0.0.0.0:"), "{addr}");
    // Without --addr the server stays on loopback.
    assert!(help(&["serve"]).contains("[default: 127.0.0.1:8080]"));
}

#[test]
fn the_build_context_is_only_the_sources_and_the_model() {
    let ignore = read(".dockerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(rules[0], "*", "everything is excluded first");
    let allowed: Vec<&str> = rules[1..]
        .iter()
        .map(|r| r.strip_prefix('!').expect("then only exceptions"))
        .collect();
    assert_eq!(
        allowed,
        ["Cargo.toml", "Cargo.lock", "code/", "src/", "*.safetensors"]
    );
    // Everything the Dockerfile copies from the context is allowed in.
    let all = dockerfile();
    for copy in all
        .iter()
        .filter(|i| i.keyword == "COPY" && !i.args.starts_with("--from"))
    {
        let parts: Vec<&str> = copy.args.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            let ok = match *src {
                "${MODEL}" => true,
                s => allowed.contains(&s) || allowed.contains(&format!("{s}/").as_str()),
            };
            assert!(ok, "COPY {src}: excluded by .dockerignore");
        }
    }
}

#[test]
fn the_suite_builds_and_starts_the_image() {
    // The full suite runs the smoke test, and its setup installs what that needs.
    let test = read(".ci/test");
    assert!(
        test.contains("bash .ci/image-smoke"),
        ".ci/test does not run it"
    );
    let setup = read(".ci/setup");
    assert!(setup.contains("for p in buildah podman debootstrap; do"));
    // The smoke test builds this Dockerfile without pulling, starts the server from the
    // mounted image as the image's user, and asks every route that matters.
    let smoke = read(".ci/image-smoke");
    for step in [
        "buildah bud --isolation chroot --format docker --layers --pull=never",
        "-f deploy/Dockerfile",
        "podman image mount",
        "\"$chroot\" --userspec=\"$user\" \"$mnt\" \"${cmd[@]}\"",
        "\"$base/healthz\"",
        "\"$base/readyz\"",
        "\"$base/v1/models/mnist_cnn/predict\"",
        "\"${check[@]}\"",
        "podman image unmount",
    ] {
        assert!(smoke.contains(step), ".ci/image-smoke lacks {step}");
    }
}

// ---------------------------------------------------------------------------------------
// The health probe.

/// A server on a free loopback port, with or without a model; stopped when dropped.
struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(with_model: bool) -> Running {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let state = if with_model {
            server()
        } else {
            AppState::new(ServeConfig {
                log_requests: false,
                ..ServeConfig::default()
            })
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(dlbook::serve::serve(addr, state, async {
                let _ = rx.await;
            }))
            .unwrap();
        });
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Running {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(|t| t.join());
    }
}

const PROBE_WAIT: Duration = Duration::from_secs(5);

#[test]
fn the_probe_passes_on_2xx_and_fails_on_anything_else() {
    let loaded = Running::start(true);
    assert_eq!(probe(&loaded.url("/healthz"), PROBE_WAIT).unwrap(), 200);
    assert_eq!(probe(&loaded.url("/readyz"), PROBE_WAIT).unwrap(), 200);
    let e = probe(&loaded.url("/no-such-route"), PROBE_WAIT).unwrap_err();
    assert!(format!("{e:#}").contains("status 404"), "{e:#}");

    // Alive but not ready: /healthz passes, /readyz fails with the server's reason.
    let loading = Running::start(false);
    assert_eq!(probe(&loading.url("/healthz"), PROBE_WAIT).unwrap(), 200);
    let e = format!(
        "{:#}",
        probe(&loading.url("/readyz"), PROBE_WAIT).unwrap_err()
    );
    assert!(e.contains("status 503") && e.contains("loading"), "{e}");

    // Nobody listening: an error naming the URL, not a hang.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}/healthz");
    let e = format!("{:#}", probe(&url, PROBE_WAIT).unwrap_err());
    assert!(e.contains(&url), "{e}");
    // Not a URL the server could answer.
    let e = format!("{:#}", probe("https://x/healthz", PROBE_WAIT).unwrap_err());
    assert!(e.contains("http://"), "{e}");
}

#[test]
fn the_probe_gives_up_after_its_timeout() {
    // A socket that accepts the connection and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", silent.local_addr().unwrap());
    let t0 = std::time::Instant::now();
    let e = probe(&url, Duration::from_millis(300)).unwrap_err();
    let waited = t0.elapsed();
    assert!(waited < Duration::from_secs(5), "waited {waited:?}: {e:#}");
    drop(silent);
}

// ---------------------------------------------------------------------------------------
// The Kubernetes manifests.

#[test]
fn the_deployment_probes_routes_the_server_answers_on_its_port() {
    let d = yaml("deploy/k8s/deployment.yaml");
    assert_eq!(text(&d, "kind"), "Deployment");
    let c = container(&d);
    let s = server();
    for (probe, route) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = at(c, &format!("{probe}.httpGet"));
        assert_eq!(text(get, "path"), route, "{probe}");
        assert_eq!(status_of(&s, route), StatusCode::OK, "{probe}: {route}");
        assert_eq!(port_of(c, at(get, "port")), image_port(), "{probe}");
    }
    // The arguments are options the server takes (appended to the image's ENTRYPOINT).
    assert_takes(&["serve"], &strings(at(c, "args")));
}

#[test]
fn the_deployment_sets_requests_limits_and_a_non_root_read_only_container() {
    let d = yaml("deploy/k8s/deployment.yaml");
    let c = container(&d);
    for r in ["cpu", "memory"] {
        let req = quantity(at(c, &format!("resources.requests.{r}")));
        let lim = quantity(at(c, &format!("resources.limits.{r}")));
        assert!(req > 0.0 && req <= lim, "{r}: request {req}, limit {lim}");
    }
    // One inference worker per CPU of the limit, no more.
    let args = at(c, "args").as_sequence().unwrap();
    let i = args
        .iter()
        .position(|a| a.as_str() == Some("--workers"))
        .unwrap();
    let workers: f64 = args[i + 1].as_str().unwrap().parse().unwrap();
    assert!(workers <= quantity(at(c, "resources.limits.cpu")));

    let pod = at(&d, "spec.template.spec.securityContext");
    assert_eq!(at(pod, "runAsNonRoot").as_bool(), Some(true));
    let (user, _, _) = runtime_image();
    assert_eq!(
        format!(
            "{}:{}",
            at(pod, "runAsUser").as_u64().unwrap(),
            at(pod, "runAsGroup").as_u64().unwrap()
        ),
        user,
        "the pod's user is the image's"
    );
    assert_eq!(
        at(c, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );
    assert_eq!(
        at(c, "securityContext.allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    // A rollout never takes a ready pod away before its replacement is ready.
    assert_eq!(
        at(&d, "spec.strategy.rollingUpdate.maxUnavailable").as_u64(),
        Some(0)
    );
}

#[test]
fn the_service_and_the_autoscaler_point_at_the_deployment() {
    let d = yaml("deploy/k8s/deployment.yaml");
    let svc = yaml("deploy/k8s/service.yaml");
    let hpa = yaml("deploy/k8s/hpa.yaml");
    let name = text(&d, "metadata.name");
    // The Service selects the Deployment's pods, and sends to the server's port.
    let labels: BTreeMap<String, String> =
        serde_norway::from_value(at(&d, "spec.template.metadata.labels").clone())
            .unwrap();
    let selector: BTreeMap<String, String> =
        serde_norway::from_value(at(&svc, "spec.selector").clone()).unwrap();
    assert!(
        selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "selector {selector:?}, pod labels {labels:?}"
    );
    let selects: BTreeMap<String, String> =
        serde_norway::from_value(at(&d, "spec.selector.matchLabels").clone()).unwrap();
    assert_eq!(selects, labels, "the Deployment selects its own pods");
    assert_eq!(
        port_of(container(&d), at(&svc, "spec.ports.0.targetPort")),
        image_port()
    );
    // The autoscaler scales that Deployment, on CPU, which its pods request (a
    // utilization target is a share of the request).
    assert_eq!(text(&hpa, "kind"), "HorizontalPodAutoscaler");
    assert_eq!(text(&hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(text(&hpa, "spec.scaleTargetRef.name"), name);
    let min = at(&hpa, "spec.minReplicas").as_u64().unwrap();
    let max = at(&hpa, "spec.maxReplicas").as_u64().unwrap();
    assert!(2 <= min && min < max, "min {min}, max {max}");
    let metric = at(&hpa, "spec.metrics.0.resource");
    assert_eq!(text(metric, "name"), "cpu");
    assert!(at(container(&d), "resources.requests.cpu")
        .as_str()
        .is_some());
}

#[test]
fn a_sweep_is_an_indexed_job_one_seed_per_pod() {
    let job = yaml("deploy/k8s/sweep-job.yaml");
    let d = yaml("deploy/k8s/deployment.yaml");
    assert_eq!(text(&job, "kind"), "Job");
    assert_eq!(text(&job, "spec.completionMode"), "Indexed");
    let completions = at(&job, "spec.completions").as_u64().unwrap();
    let parallelism = at(&job, "spec.parallelism").as_u64().unwrap();
    assert!(parallelism <= completions);
    let c = container(&job);
    assert_eq!(
        text(c, "image"),
        text(container(&d), "image"),
        "the same image"
    );
    // TRIAL is the pod's index, declared before the arguments refer to it.
    let env = at(c, "env").as_sequence().unwrap();
    let trial = env
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some("TRIAL"))
        .expect("a TRIAL variable");
    assert_eq!(
        text(trial, "valueFrom.fieldRef.fieldPath"),
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    let args = strings(at(c, "args"));
    assert_eq!(args[..2], ["train", "mnist-cnn"]);
    assert_takes(&args[..2], &args[2..]);
    assert!(args.contains(&"--seed=$(TRIAL)"), "{args:?}");
    assert!(
        args.iter()
            .any(|a| a.starts_with("--out=/runs/") && a.contains("$(TRIAL)")),
        "every trial writes its own file: {args:?}"
    );
    // Every volume the trial mounts is declared, and the data are mounted read-only.
    let mounts = at(c, "volumeMounts").as_sequence().unwrap();
    let volumes = at(&job, "spec.template.spec.volumes")
        .as_sequence()
        .unwrap();
    for m in mounts {
        let name = text(m, "name");
        assert!(volumes
            .iter()
            .any(|v| v.get("name").and_then(Value::as_str) == Some(name)));
    }
    let data_dir = env
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some("DLBOOK_DATA"))
        .map(|e| text(e, "value"))
        .expect("DLBOOK_DATA");
    let data = mounts
        .iter()
        .find(|m| text(m, "mountPath") == data_dir)
        .expect("a volume at DLBOOK_DATA");
    assert_eq!(at(data, "readOnly").as_bool(), Some(true));
    // The root file system is read-only: the trial runs (and `dlbook train` writes its
    // tracking store, ./mlruns) in a writable volume.
    assert_eq!(
        at(c, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );
    let work = text(c, "workingDir");
    let writable = mounts.iter().find(|m| text(m, "mountPath") == work);
    assert!(
        writable
            .is_some_and(|m| m.get("readOnly").and_then(Value::as_bool) != Some(true)),
        "workingDir {work} is not a writable volume"
    );
}
