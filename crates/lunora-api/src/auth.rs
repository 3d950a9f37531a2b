//! Who is asking, and may they: sessions (cookie) and API tokens (bearer), the role each route
//! declares, the same-origin rule for cookie-authenticated changes, the `Host` check against DNS
//! rebinding, and throttled logins.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lunora_control::{Actor, UserRole};

use crate::{App, error};

pub(crate) const COOKIE: &str = "lunora_session";
/// A session unused this long ends.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// A session ends this long after login, used or not.
pub(crate) const SESSION_ABSOLUTE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Failed logins from one address before it has to wait.
const LOGIN_FAILURES: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(300);
/// Addresses remembered for throttling; beyond it the oldest are forgotten.
const THROTTLE_ENTRIES: usize = 10_000;

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (health, metrics, the page itself, logging in).
    Open,
    Role(UserRole),
    /// A WHIP publisher: the input's own bearer token (or a one-use credential), checked by
    /// the handler against that input, not against the user accounts.
    InputToken,
}

impl Access {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::InputToken => "input_token",
            Access::Role(role) => role.name(),
        }
    }
}

/// How the actor proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Session,
    Token,
}

/// The authenticated caller, put in the request by [`require`].
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) actor: Actor,
    pub(crate) via: Via,
    pub(crate) must_change_password: bool,
    pub(crate) cookie: Option<String>,
}

pub(crate) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The caller behind a request's token or cookie, if any.
pub(crate) async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Option<Caller>, Response> {
    let store = app.control.store().clone();
    let token = bearer(headers);
    let cookie = cookie(headers);
    if token.is_none() && cookie.is_none() {
        return Ok(None);
    }
    let found = tokio::task::spawn_blocking(move || {
        let now = SystemTime::now();
        if let Some(token) = token {
            return store.token_user(&token, now).map(|found| {
                found.map(|(user, info)| (user.name, info.role, Via::Token, false, None))
            });
        }
        let Some(cookie) = cookie else {
            return Ok(None);
        };
        store
            .session_user(&cookie, now, SESSION_IDLE, SESSION_ABSOLUTE)
            .map(|found| {
                found.map(|user| {
                    (
                        user.name,
                        user.role,
                        Via::Session,
                        user.must_change_password,
                        Some(cookie),
                    )
                })
            })
    })
    .await;
    match found {
        Ok(Ok(found)) => {
            Ok(found.map(
                |(username, role, via, must_change_password, cookie)| Caller {
                    actor: Actor {
                        username,
                        role,
                        address: Some(peer.ip().to_string()),
                    },
                    via,
                    must_change_password,
                    cookie,
                },
            ))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot check a session or token");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the account store cannot be read; see the daemon's log",
            ))
        }
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("authentication failed: {e}"),
        )),
    }
}

fn is_change(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A cookie-authenticated change must come from the dashboard itself: JSON (which a form on
/// another site cannot send without CORS, which lunora never allows) and, when the browser says
/// where the request comes from, from this origin.
fn same_origin(headers: &HeaderMap) -> Result<(), Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "changes need Content-Type: application/json",
        ));
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(error(
            StatusCode::FORBIDDEN,
            "cross-site requests cannot change anything",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if origin_host != host {
            return Err(error(
                StatusCode::FORBIDDEN,
                "cross-origin requests cannot change anything",
            ));
        }
    }
    Ok(())
}

/// Checks the caller against `access` and hands the [`Caller`] to the handler.
pub(crate) async fn require(
    State((app, access)): State<(std::sync::Arc<App>, Access)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let Access::Role(role) = access else {
        return next.run(request).await;
    };
    let caller = match authenticate(&app, request.headers(), peer).await {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "log in first (POST /api/v1/session) or send Authorization: Bearer <token>",
            );
        }
        Err(response) => return response,
    };
    if caller.actor.role < role {
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "this needs the role {role}; {} is {}",
                caller.actor.username, caller.actor.role
            ),
        );
    }
    if caller.via == Via::Session
        && is_change(request.method())
        && let Err(response) = same_origin(request.headers())
    {
        return response;
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The host part of a `Host` header (`[::1]:8080` → `::1`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name
        } else {
            host
        }
    })
}

/// Refuses requests for a host name the box does not have. A page on another site that makes
/// its own name resolve to the box (DNS rebinding) sends its own name here; addresses and the
/// configured names pass.
pub(crate) async fn check_host(
    State(app): State<std::sync::Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_name)
        .unwrap_or("");
    let allowed = host.parse::<IpAddr>().is_ok()
        || host.eq_ignore_ascii_case("localhost")
        || app
            .settings
            .hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host));
    if !allowed {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "this host name is not one of the box's; add it to [http] hosts in the config file",
        );
    }
    next.run(request).await
}

/// Failed logins per address, so that one address cannot guess passwords quickly.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `address` must wait before trying again, if it must.
    pub(crate) fn wait(&self, address: IpAddr) -> Option<Duration> {
        let failures = self.lock();
        let (count, since) = failures.get(&address)?;
        let elapsed = since.elapsed();
        (*count >= LOGIN_FAILURES && elapsed < LOGIN_WINDOW).then(|| LOGIN_WINDOW - elapsed)
    }

    pub(crate) fn failed(&self, address: IpAddr) {
        let mut failures = self.lock();
        if failures.len() >= THROTTLE_ENTRIES {
            failures.retain(|_, (_, since)| since.elapsed() < LOGIN_WINDOW);
            if failures.len() >= THROTTLE_ENTRIES {
                failures.clear();
            }
        }
        let entry = failures.entry(address).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= LOGIN_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub(crate) fn succeeded(&self, address: IpAddr) {
        self.lock().remove(&address);
    }
}

/// The `Set-Cookie` value for a new session (or, with `None`, for logging out).
pub(crate) fn session_cookie(value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(value) => format!(
            "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            SESSION_ABSOLUTE.as_secs()
        ),
        None => format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    }
}

/// A short random wait after a failed login (100–400 ms), so failures cannot be timed or
/// hammered.
pub(crate) async fn failure_delay() {
    let mut byte = [0u8; 1];
    let jitter = getrandom::fill(&mut byte).map_or(0, |()| u64::from(byte[0]));
    tokio::time::sleep(Duration::from_millis(100 + jitter * 300 / 255)).await;
}

pub(crate) fn unauthorized_json() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": "wrong user name or password" })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_read_without_their_port() {
        assert_eq!(host_name("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("box.example"), "box.example");
    }

    #[test]
    fn an_address_that_fails_too_often_waits() {
        let throttle = Throttle::default();
        let address: IpAddr = [192, 0, 2, 1].into();
        for _ in 0..LOGIN_FAILURES {
            assert!(throttle.wait(address).is_none());
            throttle.failed(address);
        }
        assert!(throttle.wait(address).is_some());
        throttle.succeeded(address);
        assert!(throttle.wait(address).is_none());
    }

    #[test]
    fn cookies_are_http_only_and_same_site() {
        let set = session_cookie(Some("abc"), false);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("Secure")
        );
        assert!(session_cookie(Some("abc"), true).ends_with("; Secure"));
    }
}
