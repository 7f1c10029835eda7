//! The one place where a locker error becomes a gRPC status.

use tonic::{Code, Status};

use crate::error::Error;

/// Maps an error to its status; the message is the error's, which never holds secrets.
pub fn to_status(error: Error) -> Status {
    let code = match &error {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::NotFound(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Integrity(_) => Code::DataLoss,
        Error::ResourceExhausted(_) => Code::ResourceExhausted,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::Aborted(_) => Code::Aborted,
        Error::Internal(_) => Code::Internal,
        Error::Concealed { .. } => Code::NotFound,
    };
    Status::new(code, error.to_string())
}

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
}
