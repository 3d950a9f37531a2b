//! packaging/aws: the box's IAM policy and the MediaLive channel role parse as IAM JSON, and
//! every AWS operation the provisioner calls is allowed to the box.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use serde_json::Value;

const BOX_POLICY: &str = include_str!("../../../packaging/aws/box-policy.json");
const MEDIALIVE_ROLE: &str = include_str!("../../../packaging/aws/medialive-role.json");
/// Every source file that calls AWS.
const SOURCES: &[&str] = &[
    include_str!("../src/provision.rs"),
    include_str!("../src/watch.rs"),
];

/// Checks the shape IAM takes and returns the allowed actions with their resources (none in a
/// trust policy).
fn statements(policy: &Value) -> Vec<(Vec<String>, Vec<String>)> {
    assert_eq!(policy["Version"], "2012-10-17", "{policy}");
    let list = policy["Statement"].as_array().expect("a Statement list");
    assert!(!list.is_empty());
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().expect("strings").to_string())
                .collect(),
            Value::Null => Vec::new(),
            other => panic!("not a string or list: {other}"),
        }
    };
    list.iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "{s}");
            (strings(&s["Action"]), strings(&s["Resource"]))
        })
        .collect()
}

fn service_of(operation: &str) -> &'static str {
    if operation.contains("Secret") {
        "secretsmanager"
    } else if operation.contains("(MediaPackage)")
        || operation.contains("ChannelGroup")
        || operation.contains("OriginEndpoint")
    {
        "mediapackagev2"
    } else {
        "medialive"
    }
}

#[test]
fn the_box_policy_allows_every_call_the_provisioner_makes() {
    let policy: Value = serde_json::from_str(BOX_POLICY).expect("box-policy.json is JSON");
    let statements = statements(&policy);
    assert!(
        statements
            .iter()
            .all(|(_, resources)| !resources.is_empty())
    );
    let allowed: BTreeSet<String> = statements
        .into_iter()
        .flat_map(|(actions, _)| actions)
        .collect();
    // Calls are named where their errors are mapped (`aws("Op")`) or where a delete is retried
    // (`delete_patiently("Op", …)`).
    let called: BTreeSet<String> = SOURCES
        .iter()
        .flat_map(|source| {
            ["aws(\"", "delete_patiently(\""]
                .into_iter()
                .flat_map(move |call| source.split(call).skip(1))
        })
        .filter_map(|rest| rest.split('"').next())
        .map(|op| {
            let name = op.trim_end_matches(" (MediaPackage)");
            format!("{}:{name}", service_of(op))
        })
        .collect();
    assert!(called.len() > 20, "{called:?}");
    let missing: Vec<_> = called.difference(&allowed).collect();
    assert!(missing.is_empty(), "not in box-policy.json: {missing:?}");
}

#[test]
fn secrets_are_limited_to_lunora_names_and_the_role_is_passed_to_medialive_only() {
    let policy: Value = serde_json::from_str(BOX_POLICY).expect("box-policy.json is JSON");
    for (actions, resources) in statements(&policy) {
        if actions.iter().any(|a| a.starts_with("secretsmanager:")) {
            assert_eq!(resources, ["arn:aws:secretsmanager:*:*:secret:lunora/*"]);
        }
        if actions.iter().any(|a| a.starts_with("mediapackagev2:")) {
            assert_eq!(
                resources,
                ["arn:aws:mediapackagev2:*:*:channelGroup/lunora-*"]
            );
        }
    }
    let pass = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Action"] == "iam:PassRole")
        .expect("iam:PassRole");
    assert_eq!(
        pass["Condition"]["StringEquals"]["iam:PassedToService"],
        "medialive.amazonaws.com"
    );
}

#[test]
fn the_medialive_role_is_assumed_by_medialive_and_reads_secrets_writes_mediapackage() {
    let role: Value = serde_json::from_str(MEDIALIVE_ROLE).expect("medialive-role.json is JSON");
    let trust = &role["AssumeRolePolicyDocument"];
    statements(trust);
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "medialive.amazonaws.com"
    );
    assert_eq!(trust["Statement"][0]["Action"], "sts:AssumeRole");
    let permissions = statements(&role["PermissionsPolicy"]);
    assert!(
        permissions
            .iter()
            .all(|(_, resources)| !resources.is_empty())
    );
    let allowed: BTreeSet<String> = permissions
        .into_iter()
        .flat_map(|(actions, _)| actions)
        .collect();
    for needed in ["mediapackagev2:PutObject", "secretsmanager:GetSecretValue"] {
        assert!(allowed.contains(needed), "{needed} missing: {allowed:?}");
    }
    let pass = serde_json::from_str::<Value>(BOX_POLICY).expect("JSON")["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Action"] == "iam:PassRole")
        .map(|s| s["Resource"].clone())
        .expect("iam:PassRole");
    let role_name = role["RoleName"].as_str().expect("a RoleName");
    assert!(
        pass.as_str()
            .is_some_and(|r| r.ends_with(&format!(":role/{role_name}"))),
        "iam:PassRole names {pass}, not {role_name}"
    );
}
