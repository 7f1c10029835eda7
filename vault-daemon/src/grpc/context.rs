//! Builds the service's [`RequestContext`] from a tonic request: bearer token, peer address,
//! client certificate fingerprint, request id.

use std::sync::Arc;

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;
use tonic::Request;

use crate::service::RequestContext;

/// Extracts the context. A token sent in any other form than `Bearer <token>` (the scheme in
/// any case, as RFC 7235 has it; whitespace around the token ignored) counts as none sent, and
/// its bytes are not kept.
pub fn request_context<T>(request: &Request<T>) -> RequestContext {
    let token = request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let value = value.trim_start();
            let (scheme, token) = value.split_at_checked(6)?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token)
                .filter(|t| t.starts_with([' ', '\t']))
        })
        .map(|token| SecretString::from(token.trim().to_owned()));
    let cert_fingerprint = request.peer_certs().and_then(|certs| {
        certs
            .first()
            .map(|leaf| hex::encode(digest::digest(&digest::SHA256, leaf.as_ref())))
    });
    let request_id = request
        .metadata()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(generate_request_id);
    RequestContext {
        token,
        peer_addr: request.remote_addr().map(|a| a.to_string()),
        cert_fingerprint,
        request_id,
        session: None,
    }
}

/// Like [`request_context`], for a batch stream: its items share one authentication.
pub fn batch_context<T>(request: &Request<T>) -> RequestContext {
    RequestContext {
        session: Some(Arc::default()),
        ..request_context(request)
    }
}

fn generate_request_id() -> String {
    let mut bytes = [0u8; 8];
    // An all-zero id on the (practically impossible) rng failure still correlates nothing wrong.
    let _ = SystemRandom::new().fill(&mut bytes);
    hex::encode(bytes)
}
