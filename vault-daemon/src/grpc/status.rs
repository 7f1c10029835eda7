//! The one place where a locker error becomes a gRPC status.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

/// Maps an error to its status; the message is the error's, which never holds secrets. Every
/// status carries google.rpc.ErrorInfo with a stable reason (the code's name when there is no
/// more specific one) and the domain, and a rate limit also RetryInfo.
pub fn to_status(error: Error) -> Status {
    let code = code_of(error.kind());
    let mut details = match error.kind() {
        Error::RateLimited { retry_after_ms, .. } => {
            ErrorDetails::with_retry_info(Some(Duration::from_millis(*retry_after_ms)))
        }
        _ => ErrorDetails::new(),
    };
    details.set_error_info(error.reason(), ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, error.to_string(), details)
}

fn code_of(error: &Error) -> Code {
    match error {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::NotFound(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Integrity(_) => Code::DataLoss,
        Error::ResourceExhausted(_) | Error::RateLimited { .. } => Code::ResourceExhausted,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::Aborted(_) => Code::Aborted,
        Error::Internal(_) => Code::Internal,
        Error::Concealed { .. } => Code::NotFound,
        Error::Because { error, .. } => code_of(error),
    }
}

/// The `domain` of the google.rpc.ErrorInfo details this daemon attaches.
pub const ERROR_DOMAIN: &str = "mynumber-locker";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_kind_to_its_documented_code() {
        let cases = [
            (Error::InvalidArgument("m".into()), Code::InvalidArgument),
            (Error::Unauthenticated("m".into()), Code::Unauthenticated),
            (Error::PermissionDenied("m".into()), Code::PermissionDenied),
            (Error::NotFound("m".into()), Code::NotFound),
            (Error::AlreadyExists("m".into()), Code::AlreadyExists),
            (
                Error::FailedPrecondition("m".into()),
                Code::FailedPrecondition,
            ),
            (Error::Unavailable("m".into()), Code::Unavailable),
            (Error::Integrity("m".into()), Code::DataLoss),
            (
                Error::ResourceExhausted("m".into()),
                Code::ResourceExhausted,
            ),
            (Error::DeadlineExceeded("m".into()), Code::DeadlineExceeded),
            (Error::Internal("m".into()), Code::Internal),
        ];
        for (error, code) in cases {
            let status = to_status(error);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), "m");
        }
    }

    #[test]
    fn a_rate_limit_carries_retry_info_and_a_reason() {
        let status = to_status(Error::RateLimited {
            message: "m".into(),
            retry_after_ms: 1500,
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        let retry = details.retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(1500)));
        assert_eq!(
            details.error_info().expect("error info").reason,
            "RATE_LIMITED"
        );
    }
}
