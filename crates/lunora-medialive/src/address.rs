//! The box's public IPv4 address, for the input security group when the setup lists no
//! `allowed_cidrs`: MediaLive push inputs take only listed senders, and the box behind NAT does
//! not know the address AWS sees. A "what is my IP" service answers it as plain text
//! (`checkip.amazonaws.com` by default; `[aws] public_address_url`).

use std::net::Ipv4Addr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::setup::Problem;

pub const DEFAULT_PUBLIC_ADDRESS_URL: &str = "https://checkip.amazonaws.com/";

/// An answer longer than this is not an address.
const MAX_ANSWER_BYTES: usize = 64;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Asks `url` for the box's public IPv4 address and returns it as a `/32` CIDR. Errors name
/// `allowed_cidrs` and say what to do.
pub async fn public_cidr(url: &str) -> Result<String, Problem> {
    let failed = |why: String| Problem {
        field: "allowed_cidrs",
        message: format!(
            "allowed_cidrs is empty and the box could not learn its public address from {url} \
             ({why}): list the address the box sends from, e.g. [\"203.0.113.7/32\"]"
        ),
    };
    let uri: hyper::Uri = url.parse().map_err(|e| failed(format!("not a URL: {e}")))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| failed(format!("no TLS roots: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let ask = async {
        let response = client.get(uri).await.map_err(|e| failed(format!("{e}")))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| failed(format!("the answer: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        let address: Ipv4Addr = text.trim().parse().map_err(|_| {
            failed(format!(
                "the answer is not an IPv4 address: \"{}\"",
                lunora_media::printable(text.trim())
            ))
        })?;
        Ok(format!("{address}/32"))
    };
    tokio::time::timeout(TIMEOUT, ask)
        .await
        .map_err(|_| failed(format!("no answer within {} s", TIMEOUT.as_secs())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_service_names_allowed_cidrs_and_what_to_do() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let url = format!("http://127.0.0.1:{port}/ip");
        let problem = public_cidr(&url).await.unwrap_err();
        assert_eq!(problem.field, "allowed_cidrs");
        assert!(
            problem.message.starts_with(&format!(
                "allowed_cidrs is empty and the box could not learn its public address from {url}"
            )),
            "{}",
            problem.message
        );
        assert!(
            problem.message.contains("203.0.113.7/32"),
            "{}",
            problem.message
        );
        let problem = public_cidr("not a url").await.unwrap_err();
        assert!(problem.message.contains("not a URL"), "{}", problem.message);
    }
}
