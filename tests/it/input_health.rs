//! What an operator reads about an input that is not delivering.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

#[test]
fn a_caller_that_connects_but_sends_nothing_is_reported_as_such() {
    let port = free_udp_port();
    let daemon = Daemon::start(&single_srt_channel("encoder", port, "", ""));
    let dir = daemon.dir.path().to_path_buf();
    let slt = require("srt-live-transmit", "srt-tools");
    // A caller whose source never produces a byte (its stdin stays open and empty): the
    // connection is up, the picture is not.
    let (_caller, _stdin) = Proc::spawn_with_stdin(
        "silent-caller",
        &dir,
        Command::new(slt)
            .arg("-q")
            .arg("file://con")
            .arg(format!("srt://127.0.0.1:{port}?latency=200")),
    );
    let health = || daemon.input("program", "encoder");
    assert!(
        wait_for(Duration::from_secs(15), || {
            let input = health();
            input["state"] == "connected"
                && input["health"]["reasons"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r == "connected_no_data"))
                && input["health"]["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("connected, no data for"))
        }),
        "the silent caller is not named: {}\n{}",
        health(),
        daemon.log()
    );
    assert_eq!(health()["health"]["state"], "lost");
}
