//! Around every call: the server's own deadline (`[server] request_timeout_secs`), answered
//! DEADLINE_EXCEEDED as clients expect (tonic's built-in timeout says CANCELLED); a panic
//! inside a call, answered INTERNAL instead of a dropped stream; both written to the audit
//! log, since the call itself never got to write its entry. An oversized request, which the
//! codec refuses as OUT_OF_RANGE, is answered RESOURCE_EXHAUSTED, the code gRPC clients
//! expect for a message over the limit; it and a request that does not decode are audited
//! aggregated per address, like other junk. Each call is counted on its connection, so that
//! the connection is not closed as idle while a call or its response stream runs.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::Error;
use crate::grpc::connections::{CallOnConnection, ConnectionRegistry};
use crate::grpc::status::to_status;
use crate::service::Locker;

/// The peer's address, over plaintext or TLS.
fn remote_addr(request: &http::Request<Body>) -> Option<std::net::SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

/// How much sooner than the client's deadline a call is given up, so that this layer, not
/// tonic's timer (which started a moment earlier, outside it), answers.
const CLIENT_DEADLINE_MARGIN: Duration = Duration::from_millis(2);

/// The client's deadline from its `grpc-timeout` header (at most 8 digits and a unit), if any.
fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The services whose calls are audited (health and reflection are not).
const AUDITED_PREFIX: &str = "/mynumber.locker.v1.";

/// Wraps every service with a [`CallGuard`].
#[derive(Clone)]
pub struct CallGuardLayer {
    locker: Arc<Locker>,
    timeout: Duration,
    connections: Arc<ConnectionRegistry>,
}

impl CallGuardLayer {
    /// Calls get at most `timeout`; interruptions are audited through `locker`.
    pub fn new(
        locker: Arc<Locker>,
        timeout: Duration,
        connections: Arc<ConnectionRegistry>,
    ) -> CallGuardLayer {
        CallGuardLayer {
            locker,
            timeout,
            connections,
        }
    }
}

impl<S> Layer<S> for CallGuardLayer {
    type Service = CallGuard<S>;

    fn layer(&self, inner: S) -> CallGuard<S> {
        CallGuard {
            inner,
            locker: Arc::clone(&self.locker),
            timeout: self.timeout,
            connections: Arc::clone(&self.connections),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct CallGuard<S> {
    inner: S,
    locker: Arc<Locker>,
    timeout: Duration,
    connections: Arc<ConnectionRegistry>,
}

/// `Unseal` → `UNSEAL`, `SealBatch` → `SEAL_BATCH`: the audit action of a method.
fn action_of(method: &str) -> String {
    let mut out = String::with_capacity(method.len() + 4);
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Tonic's codec refuses a message over the limit as OUT_OF_RANGE; gRPC says
/// RESOURCE_EXHAUSTED. The status is in the headers (an answer without a body) or in the
/// trailers.
/// Counts a call in the metrics: its method (for the services this daemon serves; anything
/// else, and a method that does not exist, as `other`, so a client cannot invent labels), its
/// status code and its latency.
fn count_call(path: &str, code: tonic::Code, started: std::time::Instant) {
    let known = path.starts_with(AUDITED_PREFIX) || path.starts_with("/grpc.health.v1.");
    let rpc = match path.rsplit('/').next() {
        Some(method) if known && code != tonic::Code::Unimplemented => method,
        _ => "other",
    };
    let code = action_of(&format!("{code:?}"));
    crate::metrics::metrics().call(rpc, &code, started.elapsed());
}

/// What the codec refused before the call reached the locker, from a response's status: an
/// oversized message (answered RESOURCE_EXHAUSTED, the code gRPC clients expect for a message
/// over the limit, where the codec says OUT_OF_RANGE) or one that does not decode.
fn codec_refusal(headers: &mut http::HeaderMap) -> Option<Error> {
    let code = headers.get("grpc-status")?.as_bytes().to_vec();
    // grpc-message is percent-encoded.
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(|m| m.replace("%20", " "))
        .unwrap_or_default();
    if code == b"11" && message.contains("message length too large") {
        // 8: RESOURCE_EXHAUSTED.
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        return Some(Error::ResourceExhausted(
            "request message larger than the server accepts".into(),
        ));
    }
    if code == b"13" && message.contains("failed to decode Protobuf message") {
        return Some(Error::InvalidArgument(
            "request message does not decode".into(),
        ));
    }
    None
}

/// The response as the client gets it: codec refusals rewritten and reported (`report`, for
/// the aggregated audit), and the call counted on its connection until the body, a stream
/// maybe, ends.
fn guarded_response(
    mut response: http::Response<Body>,
    call: CallOnConnection,
    report: impl Fn(Error) + Send + Sync + 'static,
) -> http::Response<Body> {
    use http_body_util::BodyExt;
    if let Some(error) = codec_refusal(response.headers_mut()) {
        report(error);
    }
    response.map(|body| {
        Body::new(body.map_frame(move |mut frame| {
            let _counted = &call;
            if let Some(error) = frame.trailers_mut().and_then(codec_refusal) {
                report(error);
            }
            frame
        }))
    })
}

impl<S> Service<http::Request<Body>> for CallGuard<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|id| {
                id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .unwrap_or_default()
            .to_owned();
        let client_deadline = client_timeout(request.headers());
        let remote = remote_addr(&request);
        let peer = remote.map(|addr| addr.to_string()).unwrap_or_default();
        // The connection is not idle while this call runs (its body included).
        let on_connection = self.connections.call_started(remote);
        // The usual tower move: the clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = inner.call(request);
        let (locker, timeout) = (Arc::clone(&self.locker), self.timeout);
        let started = std::time::Instant::now();
        // tonic's own handling of `grpc-timeout` runs outside this layer and answers CANCELLED
        // "Timeout expired"; answering just before it keeps the code clients expect.
        let client_limit = client_deadline.map(|d| d.saturating_sub(CLIENT_DEADLINE_MARGIN));
        let limit = client_limit.map_or(timeout, |client| client.min(timeout));
        let client_gave_up = client_limit.is_some_and(|client| client < timeout);
        Box::pin(async move {
            let error = match tokio::time::timeout(limit, AssertUnwindSafe(future).catch_unwind())
                .await
            {
                Ok(Ok(Ok(response))) => {
                    let metric_path = path.clone();
                    let report = move |error: Error| {
                        // Refused before reaching the locker, so nothing was released; the
                        // audit is aggregated per address, as for other junk.
                        if let Some(rest) = path.strip_prefix(AUDITED_PREFIX) {
                            let method = rest.rsplit('/').next().unwrap_or(rest);
                            let (locker, action) = (Arc::clone(&locker), action_of(method));
                            let (request_id, peer) = (request_id.clone(), peer.clone());
                            tokio::spawn(async move {
                                locker
                                    .record_malformed(action, request_id, peer, error)
                                    .await;
                            });
                        }
                    };
                    let response = guarded_response(response, on_connection, report);
                    // A unary error is trailers-only (its status in the headers); an OK call's
                    // status comes in trailers, after this point.
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                    count_call(&metric_path, code, started);
                    return Ok(response);
                }
                Ok(Ok(Err(error))) => return Err(error),
                Ok(Err(_)) => {
                    tracing::error!(path = %path, "a call panicked; answered INTERNAL");
                    Error::Internal(
                        "the call failed inside the locker; nothing was released".into(),
                    )
                }
                Err(_) if client_gave_up => {
                    let error = Error::DeadlineExceeded(
                        "the client's deadline passed before the call ended; outcome unknown, nothing was released to this caller".into(),
                    );
                    // Answered at once, before tonic's own timer answers CANCELLED; the
                    // interruption is audited meanwhile (the client is gone either way).
                    if let Some(rest) = path.strip_prefix(AUDITED_PREFIX) {
                        let action = action_of(rest.rsplit('/').next().unwrap_or(rest));
                        let error = error.clone();
                        tokio::spawn(async move {
                            locker
                                .record_interrupted(action, request_id, peer, error)
                                .await
                        });
                    }
                    let status = to_status(error);
                    count_call(&path, status.code(), started);
                    return Ok(status.into_http());
                }
                Err(_) => Error::DeadlineExceeded(format!(
                    "the call took longer than the server's limit of {} s; outcome unknown, nothing was released to this caller",
                    timeout.as_secs()
                )),
            };
            let answer = match path.strip_prefix(AUDITED_PREFIX) {
                Some(rest) => {
                    let method = rest.rsplit('/').next().unwrap_or(rest);
                    locker
                        .record_interrupted(action_of(method), request_id, peer, error)
                        .await
                }
                None => error,
            };
            let status = to_status(answer);
            count_call(&path, status.code(), started);
            Ok(status.into_http())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_deadlines_parse_in_every_unit() {
        let parse = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().expect("header"));
            client_timeout(&headers)
        };
        assert_eq!(parse("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("500u"), Some(Duration::from_micros(500)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "12", "123456789m", "-1m", "1x"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn actions_are_upper_snake_case() {
        assert_eq!(action_of("Unseal"), "UNSEAL");
        assert_eq!(action_of("SealBatch"), "SEAL_BATCH");
        assert_eq!(action_of("RunDisposal"), "RUN_DISPOSAL");
    }
}
