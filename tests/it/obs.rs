//! OBS Studio itself (Debian's obs-studio, headless under Xvfb with software OpenGL) streaming a
//! media source to lunora's RTMP ingest, as a user would set it up: Service "Custom", Server
//! rtmp://HOST:1935/live, the input's stream key.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("OBS config dir");
    }
    std::fs::write(path, text).expect("OBS config file");
}

/// A fresh OBS profile and scene collection under `home`: 640x360p25, x264, one media source
/// looping `media`, streaming to `server` with `key`.
fn obs_profile(home: &Path, media: &Path, server: &str, key: &str) {
    let config = home.join(".config/obs-studio");
    write(
        &config.join("global.ini"),
        "[General]\nFirstRun=false\nEnableAutoUpdates=false\nConfirmOnExit=false\n\n[BasicWindow]\nSysTrayEnabled=false\n",
    );
    write(
        &config.join("basic/profiles/Lunora/basic.ini"),
        "[General]\nName=Lunora\n\n[Video]\nBaseCX=640\nBaseCY=360\nOutputCX=640\nOutputCY=360\nFPSType=0\nFPSCommon=25\n\n\
         [Output]\nMode=Simple\n\n[SimpleOutput]\nVBitrate=800\nABitrate=128\nStreamEncoder=x264\nPreset=ultrafast\n",
    );
    write(
        &config.join("basic/profiles/Lunora/service.json"),
        &serde_json::json!({ "type": "rtmp_custom", "settings": { "server": server, "key": key, "use_auth": false } }).to_string(),
    );
    let scene = serde_json::json!({
        "name": "Lunora", "current_scene": "Scene", "current_program_scene": "Scene", "scene_order": [{ "name": "Scene" }],
        "sources": [
            { "id": "scene", "versioned_id": "scene", "name": "Scene",
              "settings": { "id_counter": 1, "items": [{ "name": "Media", "id": 1, "visible": true, "pos": { "x": 0, "y": 0 }, "scale": { "x": 1, "y": 1 } }] } },
            { "id": "ffmpeg_source", "versioned_id": "ffmpeg_source", "name": "Media",
              "settings": { "local_file": media, "looping": true, "restart_on_activate": true } }
        ]
    });
    write(&config.join("basic/scenes/Lunora.json"), &scene.to_string());
}

#[test]
fn obs_studio_streams_to_the_rtmp_ingest() {
    let (Some(obs), Some(xvfb_run)) = (find("obs"), find("xvfb-run")) else {
        println!(
            "SKIPPED obs_studio_streams_to_the_rtmp_ingest: obs-studio or xvfb is not installed (bash .ci/run installs both)"
        );
        return;
    };
    let (rtmp, output) = (free_tcp_port(), free_udp_port());
    let config = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n\n[[channels]]\nid = \"program\"\nmode = \"single\"\n\
         [[channels.inputs]]\nid = \"obs\"\ntype = \"rtmp\"\nstream_key = \"obs-test-key\"\n\n{}",
        srt_listener_output("out", output)
    );
    let daemon = Daemon::start(&config);
    let dir = daemon.dir.path().to_path_buf();
    let media = make_ts(&dir, "media.ts", 10, "640x360", "800k");
    let home = dir.join("obs-home");
    obs_profile(
        &home,
        &media,
        &format!("rtmp://127.0.0.1:{rtmp}/live"),
        "obs-test-key",
    );
    let _obs = Proc::spawn(
        "obs",
        &dir,
        Command::new(xvfb_run)
            .args(["-a", "-s", "-screen 0 1280x720x24"])
            .arg(obs)
            .args([
                "--profile",
                "Lunora",
                "--collection",
                "Lunora",
                "--startstreaming",
                "--disable-shutdown-check",
                "--multi",
            ])
            .env("HOME", &home)
            .env("LIBGL_ALWAYS_SOFTWARE", "1"),
    );
    let connected = wait_for(Duration::from_secs(60), || {
        let input = daemon.input("program", "obs");
        input["state"] == "connected" && as_u64(&input["frames_total"]["video"]) > 50
    });
    assert!(
        connected,
        "OBS did not stream: {}\n{}",
        daemon.input("program", "obs"),
        daemon.log()
    );
    let recording = dir.join("out.ts");
    let mut recorder = ffmpeg_record(
        &dir,
        "recorder",
        &format!("srt://127.0.0.1:{output}?latency=200000&timeout=6000000"),
        &recording,
    );
    std::thread::sleep(Duration::from_secs(5));
    recorder.signal(Signal::SIGINT);
    recorder.wait(Duration::from_secs(10));
    let frames = decoded_video_frames(&recording);
    assert!(
        frames >= 75,
        "{frames} frames from OBS decoded at the SRT output"
    );
    let errors = decode_warnings(&recording);
    assert!(errors.trim().is_empty(), "{errors}");
    assert!(
        !daemon.log().contains("obs-test-key"),
        "the stream key is never logged"
    );
}
