//! The Debian package: `cargo deb` on the binary this suite built (no release build), then what
//! an administrator gets from it — the files and their modes, maintainer scripts, a
//! configuration that runs as installed, documented secrets, and the unit's hardening.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr)
}

fn ok(name: &str, command: &mut Command) -> String {
    let output = run(name, command, TIMEOUT);
    assert!(output.status.success(), "{name} failed: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the package from the `lunora` binary the suite runs: cargo-deb is pointed at a
/// target directory of its own whose `release/lunora` is that binary (a hard link).
fn build_package(work: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let version = run(
        "cargo deb --version",
        Command::new(&cargo).args(["deb", "--version"]),
        TIMEOUT,
    );
    assert!(
        version.status.success(),
        "cargo-deb is missing: `cargo install cargo-deb --locked` (bash scripts/test does): {}",
        text(&version)
    );
    let target = work.join("target");
    std::fs::create_dir_all(target.join("release")).expect("target dir");
    let binary = target.join("release/lunora");
    if std::fs::hard_link(lunora_bin(), &binary).is_err() {
        std::fs::copy(lunora_bin(), &binary).expect("copy the lunora binary");
    }
    let deb = work.join("lunora.deb");
    ok(
        "cargo deb",
        Command::new(&cargo)
            .args([
                "deb",
                "-p",
                "lunora",
                "--no-build",
                "--strip",
                "--fast",
                "--output",
            ])
            .arg(&deb)
            .arg("--manifest-path")
            .arg(repo().join("crates/lunora/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target),
    );
    assert!(deb.is_file(), "cargo deb wrote no {}", deb.display());
    deb
}

/// The `${NAME}`s a TOML file gives as values (`key = "${NAME}"`), commented-out lines
/// included.
fn env_references(toml: &str) -> Vec<String> {
    toml.split("= \"${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn package_installs_a_service_that_runs_as_installed() {
    let dpkg_deb = require("dpkg-deb", "dpkg");
    let analyze = require("systemd-analyze", "systemd");
    // Inside the target dir: the hard link to the built binary needs the same file system.
    let target_dir = lunora_bin()
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let work = tempfile::Builder::new()
        .prefix("package-test-")
        .tempdir_in(&target_dir)
        .expect("temp dir");
    let deb = build_package(work.path());

    // Control: name, dependencies, conffiles, maintainer scripts.
    let info = ok(
        "dpkg-deb --info",
        Command::new(&dpkg_deb).arg("--info").arg(&deb),
    );
    assert!(info.contains("Package: lunora"), "{info}");
    let depends = info
        .lines()
        .find(|l| l.trim_start().starts_with("Depends:"))
        .unwrap_or_default();
    // The media engine's elements are plugins, which no linker sees: named by hand.
    for package in ["adduser", "gstreamer1.0-plugins-good", "gstreamer1.0-libav"] {
        assert!(depends.contains(package), "{info}");
    }
    let control = work.path().join("control");
    ok(
        "dpkg-deb --control",
        Command::new(&dpkg_deb)
            .arg("--control")
            .arg(&deb)
            .arg(&control),
    );
    let read = |path: &Path| {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let conffiles = read(&control.join("conffiles"));
    for file in ["/etc/lunora/lunora.toml", "/etc/lunora/secrets.env"] {
        assert!(
            conffiles.lines().any(|l| l == file),
            "{file} is not a conffile: {conffiles}"
        );
    }
    let postinst = read(&control.join("postinst"));
    for needed in [
        "adduser --system --group",
        "install -d -o lunora -g lunora -m 0750 /var/lib/lunora",
        "dpkg-statoverride --update --add root lunora 0640 /etc/lunora/secrets.env",
        "deb-systemd-helper enable lunora.service",
        "deb-systemd-invoke $_dh_action lunora.service",
    ] {
        assert!(
            postinst.contains(needed),
            "postinst lacks `{needed}`:\n{postinst}"
        );
    }
    assert!(
        !postinst.contains("#DEBHELPER#"),
        "cargo-deb left its token in postinst"
    );
    let postrm = read(&control.join("postrm"));
    for needed in [
        "rm -rf /var/lib/lunora",
        "dpkg-statoverride --remove /etc/lunora/secrets.env",
        "deluser --system",
    ] {
        assert!(
            postrm.contains(needed),
            "postrm lacks `{needed}`:\n{postrm}"
        );
    }

    // Contents: every file, with its mode.
    let contents = ok(
        "dpkg-deb --contents",
        Command::new(&dpkg_deb).arg("--contents").arg(&deb),
    );
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/lunora"),
        ("-rw-r--r--", "./usr/lib/systemd/system/lunora.service"),
        ("-rw-r--r--", "./etc/lunora/lunora.toml"),
        ("-rw-r-----", "./etc/lunora/secrets.env"),
        ("-rw-r--r--", "./usr/share/doc/lunora/copyright"),
        ("-rw-r--r--", "./usr/share/doc/lunora/README.md"),
        ("-rw-r--r--", "./usr/share/doc/lunora/examples/example.toml"),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(&format!(" {path}"))),
            "{path} ({mode}) is not in the package:\n{contents}"
        );
    }

    let root = work.path().join("root");
    ok(
        "dpkg-deb -x",
        Command::new(&dpkg_deb).arg("-x").arg(&deb).arg(&root),
    );
    let copyright = read(&root.join("usr/share/doc/lunora/copyright"));
    assert!(
        copyright.contains("Apache License") && copyright.contains("Version 2.0"),
        "the copyright file carries no Apache-2.0 text:\n{copyright}"
    );

    // The installed configuration runs as it is: checked by the packaged binary with an empty
    // environment, so no ${NAME} can be left undefined.
    let etc = root.join("etc/lunora");
    let checked = run(
        "lunora check-config",
        Command::new(root.join("usr/bin/lunora"))
            .arg("check-config")
            .arg(etc.join("lunora.toml"))
            .env_clear(),
        TIMEOUT,
    );
    assert!(
        checked.status.success(),
        "the packaged /etc/lunora/lunora.toml does not pass: {}",
        text(&checked)
    );
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("ok (1 channel(s))"),
        "{}",
        text(&checked)
    );
    let config = read(&etc.join("lunora.toml"));
    assert!(
        config.contains("dir = \"/var/lib/lunora\""),
        "the packaged config must keep state where the unit's StateDirectory= is:\n{config}"
    );

    // Every secret the packaged config and the example name is documented in secrets.env.
    let secrets = read(&etc.join("secrets.env"));
    let example = read(&root.join("usr/share/doc/lunora/examples/example.toml"));
    let mut names = env_references(&config);
    names.extend(env_references(&example));
    assert!(!names.is_empty(), "the examples name no secrets");
    for name in names {
        assert!(
            secrets
                .lines()
                .any(|l| l.trim_start_matches('#').starts_with(&format!("{name}="))),
            "secrets.env does not document {name}:\n{secrets}"
        );
    }
    assert!(
        secrets.contains("LUNORA_ADMIN_PASSWORD"),
        "secrets.env must explain the first password"
    );

    // The unit: what it points at exists in the package, its hardening scores ≤ 1.5.
    let unit_dir = root.join("usr/lib/systemd/system");
    let unit = unit_dir.join("lunora.service");
    let unit_text = read(&unit);
    for line in unit_text.lines() {
        for prefix in ["Documentation=file://", "ExecStart=", "ExecStartPre="] {
            if let Some(rest) = line.strip_prefix(prefix) {
                let path = rest.split_whitespace().next().unwrap_or_default();
                let path = path.trim_start_matches('/');
                assert!(
                    root.join(path).is_file(),
                    "{line}: /{path} is not in the package"
                );
            }
        }
    }
    for needed in [
        "User=lunora",
        "EnvironmentFile=-/etc/lunora/secrets.env",
        "StateDirectory=lunora",
    ] {
        assert!(
            unit_text.lines().any(|l| l == needed),
            "the unit lacks {needed}"
        );
    }
    let security = run(
        "systemd-analyze security",
        Command::new(&analyze)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit),
        TIMEOUT,
    );
    let report = text(&security);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for lunora.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(
        exposure <= 1.5,
        "exposure {exposure} is above 1.5:\n{report}"
    );

    // `systemd-analyze verify` inside the extracted tree (the host's targets copied in, so
    // the unit's dependencies resolve): directives known, commands present and executable.
    for entry in std::fs::read_dir("/usr/lib/systemd/system").expect("the host's systemd units") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "target") && path.is_file() {
            std::fs::copy(&path, unit_dir.join(path.file_name().expect("name")))
                .expect("copy a target");
        }
    }
    let verify = run(
        "systemd-analyze verify",
        Command::new(&analyze)
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg("lunora.service"),
        TIMEOUT,
    );
    let verified = text(&verify);
    assert!(
        verify.status.success() && !verified.contains("lunora.service"),
        "systemd-analyze verify: {verified}"
    );
}
