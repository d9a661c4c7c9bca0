//! The OpenAPI 3.0 document of the server, `GET /openapi.json`.
//!
//! Written from the same constants the validator uses ([`PIXELS`], [`MAX_BATCH`]), so the
//! document and the checks cannot drift apart; an OpenAPI-driven fuzzer reads it to make
//! valid and invalid requests, and checks every answer against it.

use serde_json::{json, Value};

use super::validate::{MAX_BATCH, PIXELS};

/// The document of a server serving the model `model` (`None`: none loaded yet). The
/// route's `name` parameter lists the one name the server answers to, so a client (or a
/// fuzzer) reading the document knows which requests can succeed.
pub fn document(model: Option<&str>) -> Value {
    let name = match model {
        Some(m) => json!({"type": "string", "enum": [m]}),
        None => json!({"type": "string"}),
    };
    let error = json!({"$ref": "#/components/schemas/Error"});
    let error_response = |what: &str| {
        json!({
            "description": what,
            "content": {"application/json": {"schema": error}}
        })
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "dlbook model server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Serves the book's MNIST CNN: 28 × 28 grey images in, class probabilities out."
        },
        "paths": {
            "/v1/models/{name}/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Classify a batch of images",
                    "parameters": [{
                        "name": "name", "in": "path", "required": true,
                        "schema": name,
                        "description": "The model's name (the server says which it serves at /readyz)."
                    }],
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}
                    },
                    "responses": {
                        "200": {
                            "description": "One prediction per image, in order",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}
                        },
                        "400": error_response("The body is not JSON"),
                        "404": error_response("No model of that name"),
                        "413": error_response("The body is too large"),
                        "415": error_response("The body is not declared as JSON"),
                        "422": error_response("The body is JSON but breaks a rule: the error says which and where"),
                        "503": error_response("No model loaded yet, or the server is saturated"),
                        "504": error_response("The prediction took too long")
                    }
                }
            },
            "/healthz": {"get": {"operationId": "healthz", "summary": "The process is up",
                "responses": {"200": {"description": "Up", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}}}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "A model is loaded and serving",
                "responses": {
                    "200": {"description": "Ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}},
                    "503": {"description": "Not ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}}
                }}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                "responses": {"200": {"description": "Metrics in the Prometheus text format",
                    "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                "responses": {"200": {"description": "The OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/dashboard": {"get": {"operationId": "dashboard", "summary": "A page of the server's latency, throughput, errors, predicted classes and drift",
                "responses": {"200": {"description": "The dashboard page",
                    "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/dashboard.json": {"get": {"operationId": "dashboardData", "summary": "What the dashboard page draws: the last samples and drift checks",
                "responses": {"200": {"description": "The dashboard's ring buffers",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Dashboard"}}}}}}},
            "/": {"get": {"operationId": "draw", "summary": "A page to draw a digit on and see the model's probabilities",
                "responses": {"200": {"description": "The drawing page",
                    "content": {"text/html": {"schema": {"type": "string"}}}}}}}
        },
        "components": {"schemas": {
            "PredictRequest": {
                "type": "object",
                "required": ["instances"],
                "additionalProperties": false,
                "properties": {"instances": {
                    "type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                    "description": "Images, each 28 × 28 pixels row by row, each pixel in [0, 1]",
                    "items": {
                        "type": "array", "minItems": PIXELS, "maxItems": PIXELS,
                        "items": {"type": "number", "minimum": 0.0, "maximum": 1.0}
                    }
                }}
            },
            "PredictResponse": {
                "type": "object",
                "required": ["model", "version", "predictions"],
                "properties": {
                    "model": {"type": "string"},
                    "version": {"type": "string"},
                    "predictions": {"type": "array", "items": {
                        "type": "object",
                        "required": ["class", "probabilities"],
                        "properties": {
                            "class": {"type": "integer", "minimum": 0},
                            "probabilities": {"type": "array", "items": {"type": "number", "minimum": 0.0, "maximum": 1.0}}
                        }
                    }}
                }
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "path": {"type": "string", "description": "JSON Pointer to the offending value"}
                    }
                }}
            },
            "Dashboard": dashboard_schema(),
            "Status": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string"},
                    "model": {"type": "string"},
                    "version": {"type": "string"}
                }
            }
        }}
    })
}

/// The schema of `GET /dashboard.json` (apart: one `json!` of the whole document would
/// pass the macro's recursion limit).
fn dashboard_schema() -> Value {
    json!({
        "type": "object",
        "required": ["model", "classes", "dashboard"],
        "properties": {
            "model": {"type": "object", "required": ["ready"], "properties": {
                "ready": {"type": "boolean"},
                "name": {"type": "string", "nullable": true},
                "version": {"type": "string", "nullable": true}
            }},
            "classes": {"type": "array", "items": {"type": "integer", "minimum": 0},
                "description": "Predictions per class since the start"},
            "drift_requests": {"type": "object", "nullable": true, "properties": {
                "observed": {"type": "integer", "minimum": 0},
                "dropped": {"type": "integer", "minimum": 0},
                "rejected": {"type": "integer", "minimum": 0}
            }},
            "dashboard": {"type": "object", "required": ["interval_s", "uptime_s", "total_requests", "samples"], "properties": {
                "interval_s": {"type": "number"},
                "uptime_s": {"type": "number"},
                "total_requests": {"type": "integer", "minimum": 0},
                "samples": {"type": "array", "items": {
                    "type": "object",
                    "required": ["t", "requests_per_s", "client_errors_per_s", "server_errors_per_s"],
                    "properties": {
                        "t": {"type": "number"},
                        "requests_per_s": {"type": "number", "minimum": 0.0},
                        "client_errors_per_s": {"type": "number", "minimum": 0.0},
                        "server_errors_per_s": {"type": "number", "minimum": 0.0},
                        "p50_ms": {"type": "number", "nullable": true},
                        "p99_ms": {"type": "number", "nullable": true}
                    }
                }},
                "drift": {"type": "object", "nullable": true,
                    "required": ["window", "check_every", "alpha", "detectors", "checks"],
                    "properties": {
                        "window": {"type": "integer"},
                        "check_every": {"type": "integer"},
                        "alpha": {"type": "number"},
                        "detectors": {"type": "array", "items": {"type": "object",
                            "required": ["detector", "feature"],
                            "properties": {
                                "detector": {"type": "string"},
                                "feature": {"type": "string"},
                                "threshold": {"type": "number", "nullable": true}
                            }}},
                        "checks": {"type": "array", "items": {"type": "object",
                            "required": ["t", "seen", "scores", "p_values", "alarms"],
                            "properties": {
                                "t": {"type": "number"},
                                "seen": {"type": "integer"},
                                "scores": {"type": "array", "items": {"type": "number", "nullable": true}},
                                "p_values": {"type": "array", "items": {"type": "number", "nullable": true}},
                                "alarms": {"type": "array", "items": {"type": "boolean"}}
                            }}}
                    }}
            }}
        }
    })
}
