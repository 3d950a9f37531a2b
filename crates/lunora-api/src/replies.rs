//! What the API answers: each route's success reply (its status, media type and, for JSON, the
//! JSON Schema of the body) for the route table, and the schemas the OpenAPI document gives
//! for them. The schemas name every field a client may rely on as `required` (with its type and,
//! where it is a closed set, its values) and leave room for fields added later
//! (`additionalProperties` is not forbidden). The API fuzzing test checks every response
//! schemathesis provokes against them, so they describe what is really sent.

use serde_json::{Value, json};

/// A route's success reply.
#[derive(Clone, Copy)]
pub(crate) enum Reply {
    /// JSON with this status and schema.
    Json(u16, fn() -> Value),
    /// 204, no body.
    NoContent,
    /// 200, no body (RFC 9725's answer to a DELETE).
    #[cfg(feature = "whip")]
    Empty,
    /// 201 with a body in one of these media types (a WHIP answer).
    #[cfg(feature = "whip")]
    Created(&'static [&'static str]),
    /// 200 with a body in one of these media types (pages, scripts, text, HLS).
    Media(&'static [&'static str]),
    /// 200 `text/event-stream` that lasts as long as the client keeps it open.
    Events,
}

impl Reply {
    /// `(status, description, content)` for the OpenAPI document.
    pub(crate) fn document(self) -> (u16, Value) {
        match self {
            Reply::Json(status, schema) => (
                status,
                json!({"description": "done", "content": {"application/json": {"schema": schema()}}}),
            ),
            Reply::NoContent => (204, json!({"description": "done; nothing to say"})),
            #[cfg(feature = "whip")]
            Reply::Empty => (200, json!({"description": "done; nothing to say"})),
            #[cfg(feature = "whip")]
            Reply::Created(types) => {
                let content: serde_json::Map<String, Value> = types
                    .iter()
                    .map(|t| ((*t).to_string(), json!({"schema": {"type": "string"}})))
                    .collect();
                (201, json!({"description": "created", "content": content}))
            }
            Reply::Media(types) => {
                let content: serde_json::Map<String, Value> = types
                    .iter()
                    .map(|t| ((*t).to_string(), json!({"schema": {"type": "string"}})))
                    .collect();
                (200, json!({"description": "done", "content": content}))
            }
            Reply::Events => (
                200,
                json!({"description": "Server-Sent Events until the client goes away", "content": {"text/event-stream": {"schema": event()}}}),
            ),
        }
    }
}

/// One Server-Sent Event: its kind, and its data (JSON text: the channels' status for
/// `status`, the graph event for the others).
fn event() -> Value {
    json!({
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["status", "switch", "input", "output", "config", "all_lost"]},
            "data": {"type": "string", "contentMediaType": "application/json"},
        },
    })
}

fn string() -> Value {
    json!({"type": "string"})
}

fn nullable_string() -> Value {
    json!({"type": ["string", "null"]})
}

fn count() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn object(properties: Value) -> Value {
    let required: Vec<Value> = properties
        .as_object()
        .map(|p| p.keys().map(|k| Value::String(k.clone())).collect())
        .unwrap_or_default();
    json!({"type": "object", "required": required, "properties": properties})
}

fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

fn role() -> Value {
    json!({"type": "string", "enum": ["user", "admin", "superadmin"]})
}

/// Every error: `error` says what went wrong and what to do; `problems` lists each validation
/// problem (400 on a change that does not validate).
pub(crate) fn error() -> Value {
    json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "problems": strings()}})
}

/// Any JSON object (a JSON Schema, the OpenAPI document itself).
pub(crate) fn any_object() -> Value {
    json!({"type": "object"})
}

pub(crate) fn login() -> Value {
    object(
        json!({"username": string(), "role": role(), "must_change_password": {"type": "boolean"}}),
    )
}

pub(crate) fn whoami() -> Value {
    object(json!({
        "username": string(),
        "role": role(),
        "must_change_password": {"type": "boolean"},
        "via": {"type": "string", "enum": ["session", "token"]},
    }))
}

pub(crate) fn system() -> Value {
    object(json!({
        "version": string(),
        "addresses": strings(),
        "rtmp_listen": nullable_string(),
        "store": object(json!({"ok": {"type": "boolean"}, "problem": nullable_string()})),
    }))
}

fn health() -> Value {
    object(json!({
        "state": {"type": "string", "enum": ["healthy", "degraded", "lost"]},
        "reasons": strings(),
    }))
}

/// One input's status (`GET …/inputs`); a new RTMP input's reply adds `stream_key` and
/// `publish_url` once.
pub(crate) fn input() -> Value {
    let mut input = object(json!({
        "id": string(),
        "role": {"type": "string", "enum": ["main", "backup"]},
        "type": {"type": "string", "enum": ["srt", "rtmp", "rtp", "file", "test_pattern", "whip"]},
        "listen": nullable_string(),
        "ingest": object(json!({"passphrase_set": {"type": "boolean"}, "stream_key_set": {"type": "boolean"}, "token_set": {"type": "boolean"}})),
        "health": health(),
        "config": any_object(),
        "state": {"type": "string", "enum": ["waiting", "connected"]},
        "peer": nullable_string(),
        "last_error": nullable_string(),
        "connections_total": count(),
        "bytes_total": count(),
        "bitrate_bps": {"type": "number", "minimum": 0},
        "frames_total": object(json!({"video": count(), "audio": count(), "data": count()})),
        "tr101290": counts("TR 101 290 errors since start, by indicator"),
        "tr101290_last_5min": counts("the same indicators over the last 5 minutes (10 s steps)"),
        "video": video_format(),
        "srt": any_object(),
    }));
    // Only a WebRTC input with a publisher has it.
    input["properties"]["lip_sync"] = json!({
        "type": "string",
        "enum": ["arrival", "sender_reports"],
        "description": "what places audio against video: the first packets' arrival or the publisher's RTCP sender reports",
    });
    input
}

fn counts(description: &str) -> Value {
    json!({"type": "object", "description": description, "additionalProperties": count()})
}

/// An input's video format, from the stream's SPS (SRT and RTMP inputs alike).
fn video_format() -> Value {
    let mut format = object(json!({
        "codec": string(),
        "width": count(),
        "height": count(),
        "frame_rate": {"type": ["number", "null"]},
        "interlaced": {"type": "boolean"},
    }));
    format["type"] = json!(["object", "null"]);
    format["description"] = json!("null until the first keyframe");
    format
}

pub(crate) fn inputs() -> Value {
    array(input())
}

/// One output's status; an RTMP destination adds `destination` (never its stream key).
pub(crate) fn output() -> Value {
    object(json!({
        "id": string(),
        "type": {"type": "string", "enum": ["srt", "rtmp"]},
        "mode": string(),
        "address": string(),
        "config": any_object(),
        "state": {"type": "string", "enum": ["idle", "connecting", "live", "retrying", "failed"]},
        "peers": strings(),
        "bytes_total": count(),
        "frames_total": count(),
        "dropped_frames_total": count(),
        "reconnects_total": count(),
        "last_error": nullable_string(),
        "next_retry_seconds": {"type": ["number", "null"]},
        "warnings": strings(),
    }))
}

pub(crate) fn outputs() -> Value {
    array(output())
}

fn switch_view() -> Value {
    object(json!({
        "from": nullable_string(),
        "to": string(),
        "reason": string(),
        "at": string(),
        "decision_to_cut_ms": count(),
        "gap_ms": count(),
        "incompatible": strings(),
    }))
}

pub(crate) fn channel() -> Value {
    object(json!({
        "id": string(),
        "mode": {"type": "string", "enum": ["single", "main-backup"]},
        "active_input": nullable_string(),
        "forced_input": nullable_string(),
        "config": any_object(),
        "inputs": inputs(),
        "outputs": outputs(),
        "switches": array(switch_view()),
        "switch_counts": array(object(json!({"from_role": string(), "to_role": string(), "reason": string(), "count": count()}))),
        "incompatible_switches_total": count(),
        "timeline_dropped_frames_total": count(),
        "hls": object(json!({
            "playlist": string(),
            "segments": count(),
            "bytes": count(),
            "media_sequence": count(),
            "target_duration_seconds": count(),
            "discontinuities_total": count(),
        })),
        "transcodes": array(object(json!({
            "profile": string(),
            "destinations": count(),
            "frames_in_total": count(),
            "frames_out_total": count(),
            "frames_dropped_total": count(),
        }))),
        "slate": object(json!({
            "enabled": {"type": "boolean"},
            "on_air": {"type": "boolean"},
            "on_air_since": nullable_string(),
        })),
        "content_alignment": array(object(json!({
            "from": string(),
            "to": string(),
            "shift_seconds": {"type": "number"},
            "match_cost": {"type": "number", "minimum": 0},
        }))),
    }))
}

pub(crate) fn channels() -> Value {
    array(channel())
}

/// `POST …/switch`: accepted; the cut happens at the next keyframe.
pub(crate) fn switch_accepted() -> Value {
    object(json!({"channel": string(), "requested": string()}))
}

/// Start/stop one or all destinations: accepted; `outputs` is how many it concerns.
pub(crate) fn run_accepted() -> Value {
    object(json!({
        "channel": string(),
        "output": nullable_string(),
        "action": {"type": "string", "enum": ["start", "stop"]},
        "outputs": count(),
    }))
}

pub(crate) fn audit() -> Value {
    array(object(json!({
        "id": {"type": "integer"},
        "at": string(),
        "username": nullable_string(),
        "address": nullable_string(),
        "action": string(),
        "target": string(),
        "details": {},
    })))
}

pub(crate) fn user() -> Value {
    object(
        json!({"username": string(), "role": role(), "created_at": string(), "must_change_password": {"type": "boolean"}}),
    )
}

pub(crate) fn users() -> Value {
    array(user())
}

fn token_properties() -> Value {
    json!({
        "id": string(),
        "name": string(),
        "owner": string(),
        "role": role(),
        "created_at": string(),
        "last_used_at": nullable_string(),
    })
}

pub(crate) fn tokens() -> Value {
    array(object(token_properties()))
}

/// A new token: its listing, plus the secret (shown this once).
pub(crate) fn new_token() -> Value {
    let mut properties = token_properties();
    properties["token"] = string();
    object(properties)
}

/// `GET /api/v1/audit`'s query: how many records (1–1000, default 100) and the id to list
/// before (paging back).
pub(crate) fn audit_query() -> Value {
    json!([
        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}},
        {"name": "before", "in": "query", "required": false, "schema": {"type": "integer"}},
    ])
}
