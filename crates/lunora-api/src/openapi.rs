//! `/api/v1/openapi.json`, built from the same route table the router is: every path, its
//! methods, the role each needs (`x-lunora-role`) and the request body's JSON Schema.

use axum::Json;
use serde_json::{Map, Value, json};

use crate::auth::Access;

pub(crate) fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for route in crate::routes() {
        let mut operation = json!({
            "summary": route.summary,
            "x-lunora-role": route.access.name(),
            "responses": {
                "200": {"description": "done"},
                "400": {"description": "the request does not validate; `error` and `problems` say why"},
                "401": {"description": "not logged in"},
                "403": {"description": "the role does not allow it"},
            },
        });
        if route.access == Access::Open {
            operation["security"] = json!([]);
        }
        if let Some(schema) = route.response {
            operation["responses"]["200"]["content"] =
                json!({"application/json": {"schema": schema()}});
        }
        if let Some(schema) = route.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": schema()}},
            });
        }
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
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
