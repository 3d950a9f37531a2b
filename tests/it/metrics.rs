//! `/metrics` is valid Prometheus exposition and agrees with the API.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// `promtool check metrics` passes `body` without a single lint finding.
pub fn assert_promtool_accepts(body: &str) {
    let promtool = require("promtool", "prometheus");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write metrics");
    let out = check.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        complaints.trim().is_empty(),
        "promtool lint findings:\n{complaints}"
    );
}

/// The `lunora_*` names a file of rules or queries uses.
pub fn metric_names(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("lunora_"))
        .collect()
}

/// Whether `/metrics` output `exported` has a series of `name`.
pub fn exports(exported: &str, name: &str) -> bool {
    exported
        .lines()
        .any(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
}

#[test]
fn metrics_pass_promtool_and_match_the_api() {
    let port = free_udp_port();
    let daemon = Daemon::start(&single_srt_channel("cam", port, "", ""));
    // Series exist before any sender connects.
    let (status, idle) = daemon.get("/metrics");
    assert_eq!(status, 200);
    assert!(idle.contains("lunora_input_tr101290_errors_total{channel=\"program\",indicator=\"continuity_count_error\",input=\"cam\",priority=\"1\"} 0"), "{idle}");
    assert!(
        idle.contains("lunora_input_up{channel=\"program\",input=\"cam\",role=\"main\"} 0"),
        "{idle}"
    );

    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 10, "320x180", "300k");
    let _push = srt_push(&dir, "push", &source, port);
    assert!(wait_for(Duration::from_secs(15), || as_u64(
        &daemon.input("program", "cam")["frames_total"]["video"]
    ) >= 50));
    let (_, body) = daemon.get("/metrics");
    assert!(
        body.contains("lunora_input_up{channel=\"program\",input=\"cam\",role=\"main\"} 1"),
        "{body}"
    );

    assert_promtool_accepts(&body);

    let api_bytes = as_u64(&daemon.input("program", "cam")["bytes_total"]);
    let (_, body) = daemon.get("/metrics");
    let metric_bytes: u64 = body
        .lines()
        .find(|l| l.starts_with("lunora_input_received_bytes_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("bytes metric");
    assert!(
        metric_bytes >= api_bytes && metric_bytes > 0,
        "metric {metric_bytes} vs API {api_bytes}"
    );
}

#[test]
fn the_shipped_alert_rules_pass_promtool_and_use_only_metrics_lunora_exports() {
    let promtool = require("promtool", "prometheus");
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = run(
            "promtool",
            Command::new(&promtool).args(args).current_dir(&rules),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every metric a rule names is one the daemon really exports (with the store metric too).
    let daemon = Daemon::start(&single_srt_channel(
        "cam",
        free_udp_port(),
        "",
        &crate::rtmp_output::rtmp_destination("yt", free_tcp_port(), "k"),
    ));
    let (_, exported) = daemon.get("/metrics");
    let text = std::fs::read_to_string(rules.join("alerts.yml")).expect("alerts.yml");
    let mut named = 0;
    // The MediaLive series exist only for provisioned channels: medialive.rs checks them.
    for word in metric_names(&text)
        .into_iter()
        .filter(|w| !w.starts_with("lunora_medialive_"))
    {
        named += 1;
        assert!(
            exports(&exported, word),
            "alerts.yml names {word}, which /metrics does not export"
        );
    }
    assert!(named >= 7, "{named}");
}

#[test]
fn the_grafana_dashboard_queries_parse_and_use_only_exported_metrics() {
    let promtool = require("promtool", "prometheus");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/grafana/lunora.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard"))
            .expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = std::collections::HashSet::new();
    let mut exprs = Vec::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate panel id: {panel}"
        );
        assert!(
            panel["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{panel}"
        );
        for target in panel["targets"].as_array().expect("targets") {
            // Grafana's variables stand for label values; any value parses the same.
            let expr = target["expr"]
                .as_str()
                .expect("expr")
                .replace("$channel", ".*")
                .replace("$job", ".*");
            exprs.push(expr);
        }
    }
    assert!(exprs.len() >= 12, "{}", exprs.len());
    // promtool parses PromQL when it checks recording rules.
    let dir = tempfile::tempdir().expect("temp dir");
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(n, e)| {
            format!(
                "      - record: dashboard:query_{n}\n        expr: '{}'\n",
                e.replace('\'', "''")
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("queries.yml"),
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .expect("rules");
    let out = run(
        "promtool check rules",
        Command::new(&promtool)
            .args(["check", "rules", "queries.yml"])
            .current_dir(dir.path()),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs = crate::rtmp_output::rtmp_destination("yt", free_tcp_port(), "k");
    let daemon = Daemon::start(&single_srt_channel("cam", free_udp_port(), "", &outputs));
    let (_, exported) = daemon.get("/metrics");
    // The MediaLive series exist only for provisioned channels: medialive.rs checks them.
    for expr in &exprs {
        let names = metric_names(expr).into_iter().chain(
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("process_")),
        );
        for word in names.filter(|w| !w.starts_with("lunora_medialive_")) {
            assert!(
                exports(&exported, word),
                "the dashboard queries {word}, which /metrics does not export"
            );
        }
    }
}
