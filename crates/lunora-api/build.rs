//! Checks that the web UI's assets are in place before they are embedded: the pages in
//! `web/src`, and hls.js, which `npm ci --prefix web` fetches from the npm registry (the set-up
//! commands `bash scripts/run` and `bash scripts/test` run it).

use std::path::Path;

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    for asset in [
        "src/index.html",
        "src/app.js",
        "src/style.css",
        "node_modules/hls.js/dist/hls.light.min.js",
    ] {
        let path = web.join(asset);
        println!("cargo:rerun-if-changed={}", path.display());
        if !path.is_file() {
            panic!(
                "\n\nweb/{asset} is missing, and the dashboard embeds it.\n\
                 Run `npm ci --prefix web` in the repository (bash scripts/run and bash scripts/test do this), then build again.\n\n"
            );
        }
    }
}
