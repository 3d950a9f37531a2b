# Shared by scripts/run and scripts/test: install what is missing, quietly and only once.
# Usage: . scripts/deps.sh; need_apt PACKAGE... ; need_rust

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to install packages: $*" >&2; return 1; fi
}

need_apt() {
    missing=""
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
    done
    if [ -n "$missing" ]; then
        echo "installing:$missing"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
}

need_rust() {
    if ! command -v cargo >/dev/null; then
        echo "cargo is missing: install Rust 1.95 or newer (https://rustup.rs) and run this again" >&2
        exit 1
    fi
}

# The dashboard's assets (hls.js, and playwright-core for its browser test) come from the npm
# registry into web/node_modules, exactly as package-lock.json pins them; the build embeds them.
need_web() {
    if ! command -v npm >/dev/null; then
        need_apt nodejs npm
    fi
    if [ ! -d web/node_modules/hls.js ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
        echo "installing the web UI's npm packages"
        npm ci --prefix web --no-audit --no-fund --loglevel=error
    fi
}

# schemathesis (PyPI) fuzzes the HTTP API from its OpenAPI document in the test suite; it lives in
# its own virtual environment in cargo's target directory (CARGO_TARGET_DIR when set, where the
# test finds it beside its own executable) so the system Python stays untouched.
need_schemathesis() {
    local venv=${CARGO_TARGET_DIR:-target}/schemathesis-venv
    if [ ! -x "$venv/bin/schemathesis" ]; then
        need_apt python3-venv
        echo "installing schemathesis into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
    fi
}

# moto_server (PyPI moto[server]) stands in for AWS MediaLive and MediaPackage v2 in the
# lunora-medialive tests, in its own virtual environment under target/ like schemathesis.
need_moto() {
    local venv=target/moto-venv
    if [ ! -x "$venv/bin/moto_server" ]; then
        need_apt python3-venv
        echo "installing moto[server] into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
    fi
}

# cargo-deb builds the Debian package (`cargo deb -p lunora`); the suite packages the binary it
# built and checks the result.
need_cargo_deb() {
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "installing cargo-deb"
        cargo install cargo-deb --version 3.8.0 --locked --quiet
    fi
}
