//! Running the server in a container: the health probe its image's `HEALTHCHECK` runs.
//!
//! A container runtime decides whether a container is healthy by running a command inside
//! it and reading its exit status. The server's image has no `curl`, so the binary
//! carries its own check, `dlbook probe URL`: one `GET`, success on a 2xx answer within
//! the timeout, and a one-line reason otherwise (the runtime keeps the last few in
//! `docker inspect`).

use std::time::Duration;

use anyhow::{bail, Context, Result};

// ANCHOR: probe
/// Asks `url` once with `GET`; `Ok` with the status when it answers 2xx within `timeout`,
/// otherwise an error saying what happened (refused, timed out, or the status and the
/// first line of the body).
pub fn probe(url: &str, timeout: Duration) -> Result<u16> {
    if !url.starts_with("http://") {
        bail!(
            "probe {url:?}: the server speaks plain HTTP, so the URL starts with http://"
        );
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(status);
    }
    // A short reason is enough: the runtime stores the output of every probe.
    let body = resp
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    let first = body.lines().next().unwrap_or("").trim();
    bail!("GET {url}: status {status} {first}")
}
// ANCHOR_END: probe
