//! What a prediction request may contain, checked before any of it reaches the model.
//!
//! The body is JSON: `{"instances": [[784 numbers], ...]}`, one row of 28 × 28 pixels
//! per image, row by row, each pixel in `[0, 1]` (MNIST's bytes divided by 255, as the
//! model was trained). Every rule has its own error with the JSON Pointer of the value
//! that broke it (`/instances/3/17`), so a client can find it. Bodies that are not JSON at
//! all (a truncated upload, `NaN`, which JSON does not have) are 400s; JSON that breaks a
//! rule is a 422. The rules are plain functions of the parsed body, so every one of them
//! is unit-tested without a server.

use serde::Serialize;
use serde_json::Value;

/// Pixels per image: 28 × 28.
pub const PIXELS: usize = 28 * 28;
/// The most images one request may carry.
pub const MAX_BATCH: usize = 256;
/// The largest body accepted, in bytes: a full batch of pixels written with 17
/// significant digits fits (256 × 784 × ~20 bytes ≈ 4 MB), anything larger is refused
/// before it is read.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// A rejected request: the HTTP status, a stable machine-readable code, a sentence for
/// people, and where in the body the problem is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiError {
    /// The HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// A stable code (`wrong_length`, `out_of_range`, ...).
    pub code: &'static str,
    /// What was wrong, in words.
    pub message: String,
    /// JSON Pointer to the offending value (`""`: the whole body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ApiError {
    /// A 422: the body is JSON but breaks a rule at `path`.
    pub fn invalid(
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status: 422,
            code,
            message: message.into(),
            path: Some(path.into()),
        }
    }

    /// Any other status, with no path.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            path: None,
        }
    }
}

/// Parses and checks a prediction body; returns the images as one `(n × 784)` row-major
/// buffer of `f32` and `n`.
pub fn parse_predict(body: &[u8]) -> Result<(Vec<f32>, usize), ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            413,
            "body_too_large",
            format!(
                "the body has {} bytes; the limit is {MAX_BODY_BYTES}",
                body.len()
            ),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let hint = if e.is_eof() {
            " (the body ends too early: was it cut off?)"
        } else if e.is_syntax() && body.windows(3).any(|w| w == b"NaN" || w == b"Inf") {
            " (NaN and Infinity are not JSON numbers; every pixel must be in [0, 1])"
        } else {
            ""
        };
        ApiError::new(
            400,
            "malformed_json",
            format!("the body is not valid JSON: {e}{hint}"),
        )
    })?;
    validate(&value)
}

/// The rules on a parsed body (see the module's documentation).
pub fn validate(value: &Value) -> Result<(Vec<f32>, usize), ApiError> {
    let obj = value.as_object().ok_or_else(|| {
        ApiError::invalid(
            "not_an_object",
            "",
            format!(
                "the body must be a JSON object {{\"instances\": [...]}}, not {}",
                kind(value)
            ),
        )
    })?;
    if let Some(extra) = obj.keys().find(|k| *k != "instances") {
        return Err(ApiError::invalid(
            "unknown_field",
            format!("/{}", escape(extra)),
            format!("unknown field `{extra}`: the body has only `instances`"),
        ));
    }
    let instances = obj.get("instances").ok_or_else(|| {
        ApiError::invalid("missing_field", "", "the body has no `instances` field")
    })?;
    let rows = instances.as_array().ok_or_else(|| {
        ApiError::invalid(
            "wrong_type",
            "/instances",
            format!(
                "`instances` must be an array of images, not {}",
                kind(instances)
            ),
        )
    })?;
    if rows.is_empty() {
        return Err(ApiError::invalid(
            "empty_batch",
            "/instances",
            "`instances` is empty: send at least one image",
        ));
    }
    if rows.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "batch_too_large",
            "/instances",
            format!(
                "{} images in one request; the limit is {MAX_BATCH}",
                rows.len()
            ),
        ));
    }
    let mut pixels = Vec::with_capacity(rows.len() * PIXELS);
    for (i, row) in rows.iter().enumerate() {
        let at = format!("/instances/{i}");
        let row = row.as_array().ok_or_else(|| {
            ApiError::invalid(
                "wrong_type",
                at.clone(),
                format!(
                    "image {i} must be an array of {PIXELS} numbers, not {}",
                    kind(row)
                ),
            )
        })?;
        if row.len() != PIXELS {
            return Err(ApiError::invalid(
                "wrong_length",
                at,
                format!("image {i} has {} values; an image is 28 × 28 = {PIXELS} pixels, row by row", row.len()),
            ));
        }
        for (j, p) in row.iter().enumerate() {
            let v = p.as_f64().ok_or_else(|| {
                ApiError::invalid(
                    "wrong_type",
                    format!("{at}/{j}"),
                    format!("pixel {j} of image {i} must be a number, not {}", kind(p)),
                )
            })?;
            // JSON numbers are finite, but a huge literal (1e999) parses to infinity.
            if !(0.0..=1.0).contains(&v) {
                return Err(ApiError::invalid(
                    "out_of_range",
                    format!("{at}/{j}"),
                    format!("pixel {j} of image {i} is {v}; pixels are in [0, 1] (bytes divided by 255)"),
                ));
            }
            pixels.push(v as f32);
        }
    }
    Ok((pixels, rows.len()))
}

/// What a JSON value is, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A key as a JSON Pointer token (RFC 6901: `~` -> `~0`, `/` -> `~1`).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(v: f64) -> Value {
        Value::Array(vec![json!(v); PIXELS])
    }

    fn err(body: &str) -> ApiError {
        parse_predict(body.as_bytes()).unwrap_err()
    }

    fn err_value(v: Value) -> ApiError {
        validate(&v).unwrap_err()
    }

    #[test]
    fn a_valid_batch_becomes_rows_of_pixels() {
        let (px, n) =
            validate(&json!({"instances": [image(0.0), image(1.0), image(0.5)]}))
                .unwrap();
        assert_eq!(n, 3);
        assert_eq!(px.len(), 3 * PIXELS);
        assert_eq!((px[0], px[PIXELS], px[2 * PIXELS]), (0.0, 1.0, 0.5));
    }

    #[test]
    fn malformed_json_is_a_400_that_says_so() {
        let e = err("{\"instances\": [[0.1, 0.2");
        assert_eq!((e.status, e.code), (400, "malformed_json"));
        assert!(e.message.contains("cut off"), "{}", e.message);
        let e = err("{\"instances\": [[NaN]]}");
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("NaN and Infinity are not JSON"),
            "{}",
            e.message
        );
        assert_eq!(err("").status, 400);
    }

    #[test]
    fn the_body_must_be_an_object_with_only_instances() {
        let e = err_value(json!([1, 2]));
        assert_eq!(
            (e.status, e.code, e.path.as_deref()),
            (422, "not_an_object", Some(""))
        );
        let e = err_value(json!({}));
        assert_eq!(e.code, "missing_field");
        let e = err_value(json!({"instances": [image(0.0)], "a/b": 1}));
        assert_eq!(
            (e.code, e.path.as_deref()),
            ("unknown_field", Some("/a~1b"))
        );
        let e = err_value(json!({"instances": "x"}));
        assert_eq!(
            (e.code, e.path.as_deref()),
            ("wrong_type", Some("/instances"))
        );
    }

    #[test]
    fn batch_size_is_bounded_on_both_sides() {
        assert_eq!(err_value(json!({"instances": []})).code, "empty_batch");
        let many = Value::Array(vec![image(0.0); MAX_BATCH + 1]);
        let e = err_value(json!({ "instances": many }));
        assert_eq!((e.status, e.code), (422, "batch_too_large"));
        let full = Value::Array(vec![image(0.0); MAX_BATCH]);
        assert_eq!(
            validate(&json!({ "instances": full })).unwrap().1,
            MAX_BATCH
        );
    }

    #[test]
    fn every_image_is_784_numbers_in_the_unit_interval() {
        let short = Value::Array(vec![json!(0.0); PIXELS - 1]);
        let e = err_value(json!({"instances": [image(0.0), short]}));
        assert_eq!(
            (e.code, e.path.as_deref()),
            ("wrong_length", Some("/instances/1"))
        );
        assert!(e.message.contains("783 values"), "{}", e.message);

        let mut bad = vec![json!(0.0); PIXELS];
        bad[17] = json!("0.5");
        let e = err_value(json!({ "instances": [bad] }));
        assert_eq!(
            (e.code, e.path.as_deref()),
            ("wrong_type", Some("/instances/0/17"))
        );

        for v in [-0.01, 1.5, 255.0] {
            let mut bad = vec![json!(0.0); PIXELS];
            bad[3] = json!(v);
            let e = err_value(json!({ "instances": [bad] }));
            assert_eq!(
                (e.status, e.code, e.path.as_deref()),
                (422, "out_of_range", Some("/instances/0/3"))
            );
        }
        let e = err_value(json!({"instances": [7]}));
        assert_eq!(
            (e.code, e.path.as_deref()),
            ("wrong_type", Some("/instances/0"))
        );
    }

    #[test]
    fn a_huge_literal_is_out_of_range_or_malformed_never_accepted() {
        let mut body = String::from("{\"instances\": [[1e999");
        body.push_str(&", 0".repeat(PIXELS - 1));
        body.push_str("]]}");
        let e = err(&body);
        assert!(e.status == 400 || e.code == "out_of_range", "{e:?}");
    }

    #[test]
    fn an_oversized_body_is_refused_before_parsing() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(parse_predict(&body).unwrap_err().status, 413);
    }
}
