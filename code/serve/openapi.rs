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
