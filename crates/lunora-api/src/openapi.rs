//! `/api/v1/openapi.json`, built from the same route table the router is: every path, its
//! methods, the role each needs (`x-lunora-role`), the request body's JSON Schema, and every
//! response it can give with the body's schema (success from the route's [`Reply`], errors
//! from what its access, body and path imply plus the statuses it declares).
//!
//! [`Reply`]: crate::replies::Reply

use std::collections::BTreeSet;

use axum::Json;
use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::Route;
use crate::auth::Access;
use crate::replies;

/// Every error status `route` can answer. Each has a JSON body with `error`.
pub(crate) fn error_statuses(route: &Route) -> BTreeSet<u16> {
    // Any request whose `Host` is not one of the box's names (DNS rebinding).
    let mut statuses = BTreeSet::from([421]);
    if let Access::Role(_) = route.access {
        // Not logged in; the role is too low; the account store cannot be read.
        statuses.extend([401, 403, 503]);
        if !matches!(route.method, Method::GET | Method::HEAD) {
            // A change with a session cookie must be JSON from this origin.
            statuses.extend([403, 415]);
        }
    }
    if route.access == Access::InputToken {
        // No token, or not the input's.
        statuses.insert(401);
    }
    if route.body.is_some() {
        // The body does not parse or validate, is too large, or is not JSON.
        statuses.extend([400, 413, 415]);
    }
    if route.path.contains('{') {
        // The path names something that does not exist.
        statuses.insert(404);
    }
    statuses.extend(route.errors.iter().copied());
    statuses
}

fn describe(status: u16) -> &'static str {
    match status {
        400 => "the request does not validate; `error` (and `problems`) say why",
        401 => "not logged in, or wrong credentials",
        403 => "the role does not allow it, or a cross-site change",
        404 => "no such channel, input, output, user, token or file",
        409 => "conflicts with what runs (a port, id or key in use) or could not start",
        413 => "the body is over 64 KiB",
        415 => "the body is not Content-Type: application/json (application/sdp for WHIP)",
        421 => "the Host header is not one of the box's names",
        429 => "too many failed logins from this address",
        502 => "AWS refused the request; `error` carries AWS's reason",
        503 => "not ready, busy, or the state store cannot be read",
        504 => "AWS did not finish in time (a MediaLive channel still changing state)",
        _ => "error",
    }
}

pub(crate) fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for route in crate::routes() {
        let mut responses = Map::new();
        if let Some(reply) = route.reply {
            let (status, response) = reply.document();
            responses.insert(status.to_string(), response);
        }
        for status in error_statuses(&route) {
            // /readyz says "starting" in plain text; every other error is JSON.
            let content = if route.path == "/readyz" {
                json!({"text/plain": {"schema": {"type": "string"}}})
            } else {
                json!({"application/json": {"schema": replies::error()}})
            };
            responses.insert(
                status.to_string(),
                json!({"description": describe(status), "content": content}),
            );
        }
        let mut operation = json!({
            "summary": route.summary,
            "x-lunora-role": route.access.name(),
            "responses": responses,
        });
        match route.access {
            Access::Open => operation["security"] = json!([]),
            Access::InputToken => operation["security"] = json!([{"token": []}]),
            Access::Role(_) => {}
        }
        if let Some(schema) = route.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": {route.body_type: {"schema": schema()}},
            });
        }
        let mut parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if let Some(Value::Array(query)) = route.query.map(|q| q()) {
            parameters.extend(query);
        }
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Lunora Edge", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::COOKIE},
            "token": {"type": "http", "scheme": "bearer"},
        }},
        "security": [{"session": []}, {"token": []}],
        "paths": paths,
    })
}

pub(crate) async fn document() -> Json<Value> {
    Json(build())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_channel_status_schema_requires_the_input_figures_the_dashboard_reads() {
        let document = super::build();
        let schema = &document["paths"]["/api/v1/channels/{id}"]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"];
        let input = &schema["properties"]["inputs"]["items"];
        let required: Vec<&str> = input["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        for field in ["tr101290", "tr101290_last_5min", "video"] {
            assert!(required.contains(&field), "{field} not required: {input}");
        }
        assert_eq!(
            document["paths"]["/api/v1/channels"]["get"]["responses"]["200"]["content"]["application/json"]
                ["schema"]["items"],
            *schema
        );
    }
}
